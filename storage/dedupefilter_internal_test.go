package storage

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/zeebo/xxh3"
)

func testHash(s string) Hash { return Hash(xxh3.HashString128(s).Bytes()) }

// A filter goes only when every key in it has expired, an hour after the
// last one, by the wall clock and by the monotonic one; a key that never
// expires keeps its filter.
func TestDedupeFiltersDropOnlyExpired(t *testing.T) {
	defer SetDedupeFilterKeys(2)()
	d := newDedupeFilters(1, nil, &sync.WaitGroup{}, func(string, ...any) {})
	d.started, d.ready = true, true
	wall := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Unix()
	// after returns the instant dt after the start by both clocks.
	after := func(dt time.Duration) instant { return instant{wall + int64(dt/time.Second), time.Hour + dt} }
	now := after(0)
	exp := func(dt time.Duration) uint64 { return uint64(wall + int64(dt/time.Second)) }
	d.add(testHash("old1"), exp(-3*time.Hour), now)
	d.add(testHash("old2"), exp(-2*time.Hour), now) // filter 1: all expired over an hour ago
	d.add(testHash("recent"), exp(-30*time.Minute), now)
	d.add(testHash("live"), exp(time.Hour), now) // filter 2: one expired within the slack, one live
	d.add(testHash("forever"), 0, now)           // filter 3: never expires
	require.Len(t, d.gens, 3)
	require.EqualValues(t, uint64(math.MaxUint64), d.gens[2].maxExpiry)

	d.maintain(nil, now)
	require.Len(t, d.gens, 2)
	for _, k := range []string{"recent", "live", "forever"} {
		require.True(t, d.mayContain(testHash(k)), k)
	}
	d.maintain(nil, after(3*time.Hour))
	require.Len(t, d.gens, 1)
	require.True(t, d.mayContain(testHash("forever")))
	d.maintain(nil, after(10000*time.Hour))
	require.Len(t, d.gens, 1)
	require.EqualValues(t, 1, d.stats.filters.Load())
}

// A wall clock set ahead (by a day, then back) must not drop a filter
// whose keys Badger holds as live again once the clock is right: the
// monotonic clock did not move. (Found in review.)
func TestDedupeFiltersSurviveAClockJump(t *testing.T) {
	d := newDedupeFilters(1, nil, &sync.WaitGroup{}, func(string, ...any) {})
	d.started, d.ready = true, true
	wall := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Unix()
	h := testHash("x")
	d.add(h, uint64(wall+7*24*3600), instant{wall, time.Minute})
	d.maintain(nil, instant{wall + 8*24*3600, 2 * time.Minute}) // the wall clock jumps ahead
	d.maintain(nil, instant{wall + 60, 3 * time.Minute})        // and is corrected
	require.True(t, d.mayContain(h), "a filter of live keys was dropped on the wall clock alone")
	// Both clocks past the expiry: it goes.
	d.maintain(nil, instant{wall + 8*24*3600, 8 * 24 * time.Hour})
	require.Empty(t, d.gens)
}

// Past the budget, no filter is added: the newest takes every further key
// (its false positives rise; it never forgets one).
func TestDedupeFiltersBudget(t *testing.T) {
	defer SetDedupeFilterKeys(100)()
	d := newDedupeFilters(1, nil, &sync.WaitGroup{}, func(string, ...any) {})
	d.maxFilters = 3
	d.started, d.ready = true, true
	for i := 0; i < 1000; i++ {
		d.add(testHash(string(rune(i))+"k"), 0, instant{})
	}
	require.Len(t, d.gens, 3)
	for i := 0; i < 1000; i++ {
		require.True(t, d.mayContain(testHash(string(rune(i))+"k")))
	}
	// Not ready: everything may be stored.
	d.ready = false
	require.True(t, d.mayContain(testHash("never added")))
}

// After a restart the committer's first filter folds into the scan's last
// when both fit in one, and every key stays.
func TestDedupeFiltersMergeAfterScan(t *testing.T) {
	defer SetDedupeFilterKeys(100)()
	for _, tc := range []struct {
		scanned, added int
		wantFilters    int
	}{{50, 10, 1}, {95, 10, 2}, {0, 10, 1}} {
		scan := newDedupeFilters(1, nil, &sync.WaitGroup{}, func(string, ...any) {})
		for i := 0; i < tc.scanned; i++ {
			scan.add(testHash(fmt.Sprint("s", i)), 0, instant{})
		}
		d := newDedupeFilters(1, nil, &sync.WaitGroup{}, func(string, ...any) {})
		for i := 0; i < tc.added; i++ {
			d.add(testHash(fmt.Sprint("a", i)), 0, instant{})
		}
		d.gens = append(scan.gens, d.gens...)
		d.mergeNewest()
		d.ready = true
		require.Len(t, d.gens, tc.wantFilters, "%+v", tc)
		for i := 0; i < tc.scanned; i++ {
			require.True(t, d.mayContain(testHash(fmt.Sprint("s", i))))
		}
		for i := 0; i < tc.added; i++ {
			require.True(t, d.mayContain(testHash(fmt.Sprint("a", i))))
		}
	}
}

package engine

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
)

// TestSpillMergesBucketsInLogOrder spills events of many recipients into
// buckets and reads groups of buckets back: each group must yield exactly
// its buckets' events, in log order, whatever the chunk boundaries (events
// of random sizes, some larger than a chunk).
func TestSpillMergesBucketsInLogOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const nb, n = 13, 5000
	sp, err := newSpill(t.TempDir(), nb)
	require.NoError(t, err)
	defer sp.close()
	want := make([][]uint64, nb)
	var buf []byte
	for seq := uint64(1); seq <= n; seq++ {
		r := "user" + string(rune('a'+rng.IntN(26))) + string(rune('a'+rng.IntN(26)))
		size := rng.IntN(200)
		if rng.IntN(500) == 0 {
			size = spillChunkBytes + rng.IntN(1000)
		}
		ev := event.Event{Seq: seq, Recipient: r, Subject: string(make([]byte, size)), EventTime: time.Unix(int64(seq), 0)}
		buf = event.Append(buf[:0], &ev)
		b := spillBucket(r, nb)
		require.NoError(t, sp.add(b, buf))
		want[b] = append(want[b], seq)
	}
	require.NoError(t, sp.finish())
	for _, group := range [][]int{{0}, {1, 2, 3}, {4, 5, 6, 7, 8, 9, 10, 11, 12}} {
		var exp, got []uint64
		for _, b := range group {
			exp = append(exp, want[b]...)
		}
		slices.Sort(exp)
		require.NoError(t, sp.read(group, func(rec []byte) error {
			var ev event.Event
			_, err := event.Decode(rec, &ev)
			require.NoError(t, err)
			require.Contains(t, group, spillBucket(ev.Recipient, nb))
			got = append(got, ev.Seq)
			return nil
		}))
		require.Equal(t, exp, got, "group %v", group)
	}
}

// TestSpillLeavesNoFile: the spill file is unlinked at once, so a crash
// cannot leave it behind.
func TestSpillLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	sp, err := newSpill(dir, 2)
	require.NoError(t, err)
	require.NoError(t, sp.add(1, []byte("x")))
	require.NoError(t, sp.finish())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents)
	require.NoError(t, sp.close())
}

// TestCountDeltasRoundTrip: every change comes back once, in the bucket of
// its minute, and changes outside the range given (state carried from
// before it) land in the edge buckets rather than being lost.
func TestCountDeltasRoundTrip(t *testing.T) {
	const minute = int64(microsPerMinute)
	tmin, tmax := 1000*minute+5, 3000*minute+7 // 2001 minutes: buckets of 2
	cd, err := newCountDeltas(t.TempDir(), tmin, tmax)
	require.NoError(t, err)
	defer cd.sp.close()
	require.Equal(t, maxSpillBuckets, len(cd.sp.n))
	type change struct {
		s    string
		t, d int64
	}
	rng := rand.New(rand.NewPCG(3, 3))
	var want []change
	for i := 0; i < 3000; i++ {
		c := change{s: string(binary.BigEndian.AppendUint32(nil, uint32(rng.IntN(40)))), t: tmin + rng.Int64N(tmax-tmin+1), d: int64(rng.IntN(5)) - 2}
		switch i {
		case 0:
			c.t = tmin - 10*minute
		case 1:
			c.t = tmax + 10*minute
		}
		want = append(want, c)
		require.NoError(t, cd.add([]byte(c.s), c.t, c.d))
	}
	require.NoError(t, cd.sp.finish())
	var got []change
	for b := range len(cd.sp.n) {
		require.NoError(t, cd.each(b, func(s []byte, tt, d int64) error {
			m := floorDiv(tt, minute)
			exp := min(max((m-1000)/2, 0), maxSpillBuckets-1)
			require.Equal(t, exp, int64(b), "time %d", tt)
			got = append(got, change{string(s), tt, d})
			return nil
		}))
	}
	cmp := func(a, b change) int {
		switch {
		case a.t != b.t:
			return int(a.t - b.t)
		case a.s != b.s:
			if a.s < b.s {
				return -1
			}
			return 1
		}
		return int(a.d - b.d)
	}
	slices.SortFunc(want, cmp)
	slices.SortFunc(got, cmp)
	require.Equal(t, want, got)
}

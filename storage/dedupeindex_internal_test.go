package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
)

// writeTestRun writes ents (any order) as a run and opens it.
func writeTestRun(t testing.TB, dir string, first, last uint64, ents []runEnt) *dedupeRun {
	t.Helper()
	ents = slices.Clone(ents)
	slices.SortFunc(ents, func(a, b runEnt) int { return bytes.Compare(a.h[:], b.h[:]) })
	w, err := createRun(dir, first, last)
	require.NoError(t, err)
	for _, e := range ents {
		require.NoError(t, w.add(e))
	}
	r, err := w.finish()
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.f.Close() })
	return r
}

// prefixed returns a hash whose first 8 bytes are p.
func prefixed(p uint64, i int) Hash {
	var h Hash
	binary.BigEndian.PutUint64(h[:8], p)
	binary.BigEndian.PutUint64(h[8:], uint64(i)*0x9e3779b97f4a7c15)
	return h
}

// Lookups must find every hash of a run, including runs of equal 8-byte
// prefixes that span several blocks (the sparse index holds prefixes
// only), and nothing else.
func TestDedupeRunFind(t *testing.T) {
	cases := []struct {
		name string
		ents []runEnt
	}{
		{"empty", nil},
		{"one", []runEnt{{testHash("a"), 7}}},
		{"one block", func() (out []runEnt) {
			for i := range runBlock - 1 {
				out = append(out, runEnt{testHash(fmt.Sprint(i)), uint32(i + 1)})
			}
			return out
		}()},
		{"many blocks", func() (out []runEnt) {
			for i := range 10*runBlock + 3 {
				out = append(out, runEnt{testHash(fmt.Sprint(i)), uint32(i + 1)})
			}
			return out
		}()},
		{"a prefix over three blocks", func() (out []runEnt) {
			for i := range 3 * runBlock {
				out = append(out, runEnt{prefixed(1<<40, i), uint32(i + 1)})
			}
			for i := range runBlock {
				out = append(out, runEnt{prefixed(uint64(i)<<50, i), 5})
			}
			return out
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := writeTestRun(t, t.TempDir(), 1, 9, tc.ents)
			require.Equal(t, len(tc.ents), r.n)
			buf := make([]byte, runBlock*runEntry)
			for _, e := range tc.ents {
				exp, ok, err := r.find(e.h, buf)
				require.NoError(t, err)
				require.True(t, ok, "%x", e.h)
				require.Equal(t, e.exp, exp)
			}
			for _, h := range []Hash{testHash("absent"), prefixed(1<<40, -1), prefixed(0, 0), prefixed(^uint64(0), 1)} {
				if slices.ContainsFunc(tc.ents, func(e runEnt) bool { return e.h == h }) {
					continue
				}
				_, ok, err := r.find(h, buf)
				require.NoError(t, err)
				require.False(t, ok)
			}
			var seen []runEnt
			require.NoError(t, r.each(func(e runEnt) error { seen = append(seen, e); return nil }))
			require.Len(t, seen, len(tc.ents))
		})
	}
}

// A hash counts until its expiry, in the tail and in runs; a merge keeps
// the later expiry of a hash in both runs and drops expired ones.
func TestDedupeIndexExpiry(t *testing.T) {
	dir := t.TempDir()
	x, err := openDedupeIndex(dir, 10, func(string, ...any) {})
	require.NoError(t, err)
	defer x.closeRuns()
	a, b, c := testHash("a"), testHash("b"), testHash("c")
	x.add(a, 100)
	has := func(h Hash, now uint32) bool {
		ok, err := x.containsOld(h, now)
		require.NoError(t, err)
		e, in := x.tail.get(h)
		return ok || in && e > now
	}
	require.True(t, has(a, 99))
	require.False(t, has(a, 100))
	require.False(t, has(b, 0))

	r1 := writeTestRun(t, dir, 1, 10, []runEnt{{a, 50}, {b, 200}})
	r2 := writeTestRun(t, dir, 11, 20, []runEnt{{a, 150}, {c, 80}})
	x.runs = []*dedupeRun{r1, r2}
	x.tail = newTailTable()
	require.True(t, has(a, 120), "the later run's expiry")
	require.True(t, has(b, 199))
	require.False(t, has(c, 80))

	m, err := mergeRuns(dir, r1, r2, 90, nil)
	require.NoError(t, err)
	defer m.f.Close()
	require.Equal(t, uint64(1), m.first)
	require.Equal(t, uint64(20), m.last)
	var got []runEnt
	require.NoError(t, m.each(func(e runEnt) error { got = append(got, e); return nil }))
	want := []runEnt{{a, 150}, {b, 200}}
	slices.SortFunc(want, func(p, q runEnt) int { return bytes.Compare(p.h[:], q.h[:]) })
	require.Equal(t, want, got)
	require.Equal(t, uint32(200), m.maxExp)
}

// Open keeps the inputs a crash left beside a merged run that covers
// them (the merge only has to run again), and removes unfinished files.
func TestDedupeIndexOpenAfterCrashedMerge(t *testing.T) {
	dir := t.TempDir()
	r1 := writeTestRun(t, dir, 1, 10, []runEnt{{testHash("a"), 50}})
	r2 := writeTestRun(t, dir, 11, 20, []runEnt{{testHash("b"), 60}})
	m, err := mergeRuns(dir, r1, r2, 0, nil)
	require.NoError(t, err)
	require.NoError(t, m.f.Close())
	writeTestRun(t, dir, 21, 30, []runEnt{{testHash("c"), 70}})
	require.NoError(t, os.WriteFile(filepath.Join(dir, runName(31, 40)+".tmp"), []byte("half"), 0o644))

	// A merge whose second input was already removed: it stays.
	r4 := writeTestRun(t, dir, 41, 50, []runEnt{{testHash("d"), 80}})
	r5 := writeTestRun(t, dir, 51, 60, []runEnt{{testHash("e"), 90}})
	m2, err := mergeRuns(dir, r4, r5, 0, nil)
	require.NoError(t, err)
	require.NoError(t, m2.f.Close())
	require.NoError(t, os.Remove(r5.path))

	x, err := openDedupeIndex(dir, 10, func(string, ...any) {})
	require.NoError(t, err)
	defer x.closeRuns()
	var ranges [][2]uint64
	for _, r := range x.runs {
		ranges = append(ranges, [2]uint64{r.first, r.last})
	}
	require.Equal(t, [][2]uint64{{1, 10}, {11, 20}, {21, 30}, {41, 60}}, ranges)
	require.EqualValues(t, 60, x.covered.Load())
	require.EqualValues(t, 61, x.tailFrom)
	names, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, names, 4)
}

// FuzzDedupeRun opens arbitrary bytes as a run: it is refused, or its
// lookups and scan run without a panic.
func FuzzDedupeRun(f *testing.F) {
	dir := f.TempDir()
	r := writeTestRun(f, dir, 3, 4, []runEnt{{testHash("a"), 1}, {testHash("b"), 2}})
	good, err := os.ReadFile(r.path)
	require.NoError(f, err)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte(runMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), runName(0, 1))
		require.NoError(t, os.WriteFile(path, b, 0o644))
		r, err := openRun(path)
		if err != nil {
			return
		}
		defer r.f.Close()
		buf := make([]byte, runBlock*runEntry)
		for _, h := range []Hash{testHash("a"), testHash("b"), {}} {
			_, _, _ = r.find(h, buf)
		}
		_ = r.each(func(runEnt) error { return nil })
	})
}

// The tail table against a map, through growth, overwrites and removals
// (backward shifts), with hashes crowded into few home slots; sorted
// lists it in hash order.
func TestTailTableModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, crowd := range []bool{false, true} {
		tt := newTailTableBits(2)
		model := map[Hash]uint32{}
		var keys []Hash
		ops := 20000
		if crowd {
			ops = 3000 // long probe runs: quadratic
		}
		for op := range ops {
			var h Hash
			if len(keys) > 0 && rng.IntN(3) == 0 {
				h = keys[rng.IntN(len(keys))]
			} else {
				h = testHash(fmt.Sprint(op))
				if crowd {
					h[0], h[1] = 0x80, byte(rng.IntN(2)) // two home slots' worth of prefixes
				}
				keys = append(keys, h)
			}
			switch rng.IntN(4) {
			case 0:
				tt.remove(h)
				delete(model, h)
			case 1:
				// insert keeps a live entry and reports it.
				e, now := uint32(rng.IntN(1000)+1), uint32(rng.IntN(1000))
				me, ok := model[h]
				live := ok && me > now
				require.Equal(t, live, tt.insert(h, e, now))
				if !live {
					model[h] = e
				}
			default:
				e := uint32(rng.IntN(1000) + 1)
				tt.put(h, e)
				model[h] = e
			}
			if op%500 == 0 {
				for _, k := range keys {
					e, ok := tt.get(k)
					me, mok := model[k]
					require.Equal(t, mok, ok)
					require.Equal(t, me, e)
				}
			}
		}
		require.Equal(t, len(model), tt.len())
		got := tt.sorted()
		require.Len(t, got, len(model))
		require.True(t, slices.IsSortedFunc(got, func(a, b runEnt) int { return bytes.Compare(a.h[:], b.h[:]) }))
		for _, e := range got {
			require.Equal(t, model[e.h], e.exp)
		}
	}
}

// Hashes crowded at the top of the range (an authenticated sender can
// craft them: the hash is not keyed) cost probing, never unbounded
// memory: the table adds spare slots instead of doubling for them.
func TestTailTableCrowdedTop(t *testing.T) {
	tt := newTailTable()
	var keys []Hash
	for i := range 3000 {
		h := prefixed(^uint64(0), i) // the same top 64 bits
		if i%2 == 0 {
			h = prefixed(^uint64(0)-uint64(i), i) // the same top 50 bits
		}
		tt.put(h, uint32(i+1))
		keys = append(keys, h)
	}
	require.Less(t, len(tt.slots), 1<<14, "slots for 3,000 entries")
	for i, h := range keys {
		e, ok := tt.get(h)
		require.True(t, ok)
		require.Equal(t, uint32(i+1), e)
	}
	for _, h := range keys[:1000] {
		tt.remove(h)
	}
	require.Equal(t, 2000, tt.len())
	got := tt.sorted()
	require.Len(t, got, 2000)
	require.True(t, slices.IsSortedFunc(got, func(a, b runEnt) int { return bytes.Compare(a.h[:], b.h[:]) }))
}

// A group whose lookup fails stores nothing and leaves the tail as it
// was: also the hash of a candidate found in a run before the failure
// (kept, it would stretch that hash's horizon).
func TestDedupeLookupErrorLeavesTail(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.DedupeFilterMB = -1 // every candidate is looked up
	l, err := Open(cfg)
	require.NoError(t, err)
	defer l.Close()
	mk := func(i int) event.Event {
		return event.Event{Source: "s", Provider: "p", ProviderEvent: "delivered", Type: event.Delivered,
			Account: "a", Campaign: "c", Recipient: fmt.Sprint(i), EventTime: time.Now(), ReceivedTime: time.Now()}
	}
	// a and c in hash order: a's lookup (found in the newest run) comes
	// before c's, which reads the older run (c's hash is past b's, the
	// run's first), and fails.
	a, b, c := mk(0), mk(1), mk(2)
	for i := 3; ; i++ {
		ha, hb, hc := HashEvent(&a), HashEvent(&b), HashEvent(&c)
		if bytes.Compare(ha[:], hc[:]) < 0 && bytes.Compare(hb[:], hc[:]) < 0 {
			break
		}
		c = mk(i)
	}
	ctx := context.Background()
	_, err = l.AppendCtx(b)
	require.NoError(t, err)
	require.NoError(t, l.persistIndex(ctx))
	_, err = l.AppendCtx(a)
	require.NoError(t, err)
	require.NoError(t, l.persistIndex(ctx))
	l.index.mu.Lock()
	require.Len(t, l.index.runs, 2)
	require.NoError(t, l.index.runs[0].f.Close()) // b's run: reads fail
	l.index.mu.Unlock()

	_, err = l.AppendCtx(a, c)
	require.Error(t, err)
	for _, e := range []event.Event{a, c} {
		_, in := l.index.tail.get(HashEvent(&e))
		require.False(t, in, "%s", e.Recipient)
	}
}

// maintain deletes the runs whose hashes have all expired (an hour of
// slack past the last expiry), but never the newest run, which records
// how much of the log the runs cover; past maxRuns it merges.
func TestDedupeIndexMaintainDropsExpiredRuns(t *testing.T) {
	defer func(old int) { maxRuns = old }(maxRuns)
	maxRuns = 10
	dir := t.TempDir()
	x, err := openDedupeIndex(dir, 10, func(string, ...any) {})
	require.NoError(t, err)
	defer x.closeRuns()
	now := unixNow()
	old := now - 2*uint32(expirySlack/time.Second)
	x.runs = []*dedupeRun{
		writeTestRun(t, dir, 1, 10, []runEnt{{testHash("a"), old}}),
		writeTestRun(t, dir, 11, 20, []runEnt{{testHash("b"), now + 100}}),
		writeTestRun(t, dir, 21, 30, []runEnt{{testHash("c"), now - 10}}), // within the slack
		writeTestRun(t, dir, 31, 40, []runEnt{{testHash("d"), now + 100}}),
		writeTestRun(t, dir, 41, 50, []runEnt{{testHash("e"), old}}), // the newest
	}
	x.owned.Store(true) // by the committer: maintained
	x.maintain()
	var lasts []uint64
	for _, r := range x.runs {
		lasts = append(lasts, r.last)
	}
	require.Equal(t, []uint64{20, 30, 40, 50}, lasts, "the expired run went, the newest stays")
	names, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, names, 4)

	maxRuns = 2
	x.maintain()
	require.Len(t, x.runs, 2, "merged down to two")
	var hashes []Hash
	for _, r := range x.runs {
		require.NoError(t, r.each(func(e runEnt) error { hashes = append(hashes, e.h); return nil }))
	}
	// Merges drop the hashes expired by now minus the slack (e's, merged
	// into d's run), and keep those within it (c's); the newest run's
	// range survives in the merged run.
	require.ElementsMatch(t, []Hash{testHash("b"), testHash("c"), testHash("d")}, hashes)
	require.EqualValues(t, 50, x.runs[len(x.runs)-1].last)
	names, err = os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, names, 2, "replaced and expired run files are removed")
}

// Every byte of a run is covered by a checksum: flipped, it is found
// corrupt when the run opens or when a read reaches it, and a lookup of
// a hash in a corrupt block fails instead of answering.
func TestRunDetectsEveryCorruptByte(t *testing.T) {
	dir := t.TempDir()
	var ents []runEnt
	for i := range 300 { // three blocks, the last one short
		ents = append(ents, runEnt{testHash(fmt.Sprint(i)), uint32(1000 + i)})
	}
	slices.SortFunc(ents, func(a, b runEnt) int { return bytes.Compare(a.h[:], b.h[:]) })
	r := writeTestRun(t, dir, 7, 9, ents)
	good, err := os.ReadFile(r.path)
	require.NoError(t, err)
	buf := make([]byte, runBlock*runEntry)
	for off := range good {
		b := slices.Clone(good)
		b[off] ^= 0x10
		path := filepath.Join(t.TempDir(), runName(7, 9))
		require.NoError(t, os.WriteFile(path, b, 0o644))
		c, err := openRun(path)
		if err != nil {
			require.ErrorIs(t, err, errRunCorrupt, "byte %d", off)
			require.True(t, c.bad.Load())
			require.EqualValues(t, 7, c.first)
			require.EqualValues(t, 9, c.last)
			_, _, err = c.find(ents[0].h, buf)
			require.ErrorIs(t, err, errRunCorrupt)
			continue
		}
		require.GreaterOrEqual(t, off, runHeader, "a header byte is checked at open")
		require.ErrorIs(t, c.each(func(runEnt) error { return nil }), errRunCorrupt, "byte %d", off)
		require.True(t, c.bad.Load())
		_ = c.f.Close()

		// A fresh handle: the lookup of a hash in the flipped block fails
		// (that hash's own bytes may be the flipped ones).
		c, err = openRun(path)
		require.NoError(t, err)
		blk := (off - runHeader) / runEntry / runBlock
		_, _, err = c.find(ents[blk*runBlock].h, buf)
		require.ErrorIs(t, err, errRunCorrupt, "byte %d", off)
		_ = c.f.Close()
	}
	// A name that gives no range cannot be repaired: refused.
	bad := slices.Clone(good)
	bad[0] ^= 1
	path := filepath.Join(t.TempDir(), "x.run")
	require.NoError(t, os.WriteFile(path, bad, 0o644))
	_, err = openRun(path)
	require.Error(t, err)
	require.NotErrorIs(t, err, errRunCorrupt)
}

// writeRunsOf10 writes k runs of 5 live hashes each, covering 1-10,
// 11-20, ...
func writeRunsOf10(t *testing.T, dir string, k int) {
	now := unixNow()
	for i := range k {
		var ents []runEnt
		for j := range 5 {
			ents = append(ents, runEnt{testHash(fmt.Sprint(i, "-", j)), now + 3600})
		}
		r := writeTestRun(t, dir, uint64(10*i+1), uint64(10*i+10), ents)
		_ = r.f.Close()
	}
}

// A corrupt run neither makes the maintainer spin nor is touched by a log
// opened only to be read; when owned, a repair that fails is retried
// after a pause, not at once (each try reads the run's range of the log).
func TestDedupeRepairPaced(t *testing.T) {
	defer func(old int) { maxRuns = old }(maxRuns)
	maxRuns = 2
	for _, owned := range []bool{false, true} {
		dir := t.TempDir()
		writeRunsOf10(t, dir, 3)
		FlipByte(t, filepath.Join(dir, runName(11, 20)), 20) // a header: found at Open
		var merges atomic.Int64
		x, err := openDedupeIndex(dir, 10, func(msg string, _ ...any) {
			if msg == "dedupe index: merging runs failed" {
				merges.Add(1)
			}
		})
		require.NoError(t, err)
		var tries atomic.Int64
		x.fromLog = func(uint64, uint64, uint32, <-chan struct{}, int, func(uint64, []runEnt) error) ([]runEnt, error) {
			tries.Add(1)
			return nil, errors.New("an entry of the log does not decode")
		}
		x.owned.Store(owned)
		x.synced = func(uint64) (bool, <-chan struct{}) { return true, nil }
		go x.writer()
		go x.maintainer()
		x.kickMaintainer()
		if owned {
			require.Eventually(t, func() bool { return tries.Load() > 0 }, 10*time.Second, time.Millisecond)
		}
		start := time.Now()
		for range 50 {
			x.kickMaintainer() // as failing lookups do
			time.Sleep(5 * time.Millisecond)
		}
		x.close()
		require.Zero(t, merges.Load(), "a pair with a corrupt run is not merged")
		if owned {
			// Tries are a second apart at least (the pause doubles).
			require.LessOrEqual(t, tries.Load(), 1+int64(time.Since(start)/time.Second), "retried after a pause, not at every kick")
		} else {
			require.Zero(t, tries.Load())
		}
		names, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, names, 3, "the runs are as they were")
	}
}

// Open's crash clean-up: a corrupt merged run whose inputs are all there
// goes, and the inputs stay; one whose inputs are not all there stays
// (to be repaired) and replaces the rest.
func TestOpenKeepsIntactInputsOfCorruptMerge(t *testing.T) {
	for _, both := range []bool{true, false} {
		dir := t.TempDir()
		writeRunsOf10(t, dir, 2) // 1-10, 11-20
		if !both {
			require.NoError(t, os.Remove(filepath.Join(dir, runName(1, 10))))
		}
		m := writeTestRun(t, dir, 1, 20, []runEnt{{testHash("m"), unixNow() + 3600}})
		_ = m.f.Close()
		FlipByte(t, m.path, 20)
		x, err := openDedupeIndex(dir, 10, func(string, ...any) {})
		require.NoError(t, err)
		var names []string
		for _, r := range x.runs {
			names = append(names, filepath.Base(r.path))
		}
		x.closeRuns()
		if both {
			require.Equal(t, []string{runName(1, 10), runName(11, 20)}, names)
		} else {
			require.Equal(t, []string{runName(1, 20)}, names)
		}
		files, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, files, len(names))
	}
}

// A repair keeps the hashes of the run's intact blocks (retention may
// have taken their events from the log) and adds the log's; a run with
// a corrupt block answers from its other blocks meanwhile.
func TestDedupeRepairKeepsIntactBlocks(t *testing.T) {
	dir := t.TempDir()
	now := unixNow()
	var ents []runEnt
	for i := range 3 * runBlock {
		ents = append(ents, runEnt{testHash(fmt.Sprint(i)), now + 3600})
	}
	slices.SortFunc(ents, func(a, b runEnt) int { return bytes.Compare(a.h[:], b.h[:]) })
	ents[5].exp = now - 10 // expired before the repair's cut: left out
	r := writeTestRun(t, dir, 1, 1000, ents)
	FlipByte(t, r.path, runHeader+runBlock*runEntry+3) // block 1
	buf := make([]byte, runBlock*runEntry)
	_, _, err := r.find(ents[runBlock].h, buf)
	require.ErrorIs(t, err, errRunCorrupt)
	require.True(t, r.bad.Load())
	// (The first hash of block 2 needs block 1 too: block 1 may end with
	// hashes of its 8-byte prefix.)
	for _, i := range []int{0, runBlock - 1, 2*runBlock + 1, 3*runBlock - 1} {
		exp, ok, err := r.find(ents[i].h, buf)
		require.NoError(t, err, "an intact block answers")
		require.True(t, ok)
		require.Equal(t, now+3600, exp)
	}

	x := &dedupeIndex{dir: dir, log: func(string, ...any) {}, quit: make(chan struct{})}
	// The log still holds the events of half of block 1, one of block 2
	// (a later expiry), and one no block holds; one entry of block 0 has
	// expired.
	logEnts := slices.Clone(ents[runBlock : runBlock+runBlock/2])
	logEnts = append(logEnts, runEnt{ents[2*runBlock].h, now + 7200}, runEnt{testHash("new"), now + 60})
	slices.SortFunc(logEnts, func(a, b runEnt) int { return bytes.Compare(a.h[:], b.h[:]) })
	x.fromLog = func(first, last uint64, cut uint32, _ <-chan struct{}, _ int, _ func(uint64, []runEnt) error) ([]runEnt, error) {
		require.EqualValues(t, 1, first)
		require.EqualValues(t, 1000, last)
		return logEnts, nil
	}
	cut := now - 1
	ms, err := x.repair(r, cut)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	m := ms[0]
	defer m.f.Close()
	want := map[Hash]uint32{}
	for i, e := range ents {
		if i/runBlock != 1 && i != 5 {
			want[e.h] = e.exp
		}
	}
	for _, e := range logEnts {
		want[e.h] = max(want[e.h], e.exp)
	}
	got := map[Hash]uint32{}
	require.NoError(t, m.each(func(e runEnt) error { got[e.h] = e.exp; return nil }))
	require.Equal(t, want, got)
	require.Equal(t, runName(1, 1000), filepath.Base(m.path))
}

// A run of another format (another build's) is refused by name, not
// taken for corrupt and rewritten in this one's; a run of this format
// whose version byte is corrupt is taken for corrupt.
func TestRunOfAnotherFormatRefused(t *testing.T) {
	for _, tc := range []struct {
		v       byte
		other   bool // the rest differs too, as another format's would
		refused bool
	}{{'1', true, true}, {'3', true, true}, {'3', false, false}, {'0', false, false}} {
		dir := t.TempDir()
		r := writeTestRun(t, dir, 1, 2, []runEnt{{testHash("a"), 1}})
		_ = r.f.Close()
		f, err := os.OpenFile(r.path, os.O_RDWR, 0)
		require.NoError(t, err)
		_, err = f.WriteAt([]byte{tc.v}, 7)
		require.NoError(t, err)
		if tc.other {
			_, err = f.WriteAt([]byte{0xff}, 40) // its checksum
			require.NoError(t, err)
		}
		require.NoError(t, f.Close())
		x, err := openDedupeIndex(dir, 10, func(string, ...any) {})
		if tc.refused {
			require.ErrorIs(t, err, errRunFormat)
			require.ErrorContains(t, err, fmt.Sprintf("format '%c', this build reads '2'", tc.v))
			continue
		}
		require.NoError(t, err)
		require.Len(t, x.runs, 1)
		require.True(t, x.runs[0].bad.Load(), "taken for corrupt, to be repaired")
		x.closeRuns()
	}
}

// A run found corrupt while Trim writes the tail (which can wait for a
// sync) keeps its events all the same: Trim looks again before it
// deletes.
func TestTrimRechecksCorruptRunsAfterWritingTheTail(t *testing.T) {
	defer func(o int) { tailKeys = o }(tailKeys)
	tailKeys = 40
	l, err := Open(DefaultConfig(t.TempDir()))
	require.NoError(t, err)
	defer l.Close()
	appendNew(t, l, 100)
	// Runs 1-40 and 41-80 are written; the tail holds 81-100. Writing it
	// for Trim, a read finds the first run corrupt, and its repair
	// cannot read the log yet.
	require.Eventually(t, func() bool { return l.index.covered.Load() == 80 }, 10*time.Second, time.Millisecond)
	l.index.mu.Lock()
	l.index.fromLog = func(uint64, uint64, uint32, <-chan struct{}, int, func(uint64, []runEnt) error) ([]runEnt, error) {
		return nil, errors.New("not now")
	}
	l.index.mu.Unlock()
	defer SetRunWriteHook(func(first, _ uint64) error {
		if first == 81 {
			l.index.mu.RLock()
			l.index.runs[0].bad.Store(true)
			l.index.mu.RUnlock()
		}
		return nil
	})()
	n, err := l.Trim(context.Background(), 100, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "the corrupt run's events (from seq 1) stay")
	require.EqualValues(t, 1, l.FirstSeq())
}

// A repair of a large run holds only repairChunk events' hashes at once:
// the range becomes several runs that cover it without a gap, the last
// with the old run's intact blocks; they answer for every redelivery,
// across a restart, and a repair that fails leaves none of them behind.
func TestDedupeRepairInChunks(t *testing.T) {
	defer func(t, r, c int) { tailKeys, maxRuns, repairChunk = t, r, c }(tailKeys, maxRuns, repairChunk)
	tailKeys, maxRuns, repairChunk = 1000, 10, 70
	dir := t.TempDir()
	l, err := Open(DefaultConfig(dir))
	require.NoError(t, err)
	evs := appendNew(t, l, 300)
	require.NoError(t, l.Close()) // one run, 1-300
	path := filepath.Join(dir, dedupeDirName, runName(1, 300))
	FlipByte(t, path, runHeader+5) // its first block

	ranges := func(l *Log) (out [][2]uint64) {
		l.index.mu.RLock()
		defer l.index.mu.RUnlock()
		for _, r := range l.index.runs {
			out = append(out, [2]uint64{r.first, r.last})
		}
		return out
	}
	// A repair that fails (the second run cannot be written) leaves the
	// corrupt run, and no chunk of its own.
	var failures atomic.Int64
	restore := SetRunWriteHook(func(first, _ uint64) error {
		if first > 1 {
			failures.Add(1)
			return errors.New("disk full")
		}
		return nil
	})
	l, err = Open(DefaultConfig(dir))
	require.NoError(t, err)
	i := 0
	require.Eventually(t, func() bool {
		// New events: the filters' scan finds the corrupt block, and its
		// result reaches the committer at a group.
		extra := evs[0]
		extra.Recipient = fmt.Sprint("x", i)
		i++
		_, _ = l.AppendCtx(extra) // fails when its lookup needs the corrupt block
		return failures.Load() > 0
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, l.Close())
	restore()
	names, err := os.ReadDir(filepath.Join(dir, dedupeDirName))
	require.NoError(t, err)
	require.Len(t, names, 1, "%v", names)
	require.Equal(t, runName(1, 300), names[0].Name())

	l, err = Open(DefaultConfig(dir))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		res, err := l.Append(context.Background(), slices.Clone(evs))
		return err == nil && res.Duplicates == 300
	}, 10*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 1, l.DedupeStats().RunRepairs)
	// The corrupt run left before its replacements came in: no run in
	// the index overlaps another, nor does any file.
	names, err = os.ReadDir(filepath.Join(dir, dedupeDirName))
	require.NoError(t, err)
	for _, n := range names {
		require.NotEqual(t, runName(1, 300), n.Name())
		require.False(t, strings.HasSuffix(n.Name(), ".tmp"), n.Name())
	}
	rs := ranges(l)
	for i := 1; i < len(rs); i++ {
		require.Greater(t, rs[i][0], rs[i-1][1], "%v", rs)
	}
	require.NoError(t, l.Close())

	l, err = Open(DefaultConfig(dir))
	require.NoError(t, err)
	defer l.Close()
	// (A run from 301 on holds new events the failing process stored.)
	rs = ranges(l)
	require.GreaterOrEqual(t, len(rs), 5)
	require.Equal(t, [][2]uint64{{1, 70}, {71, 140}, {141, 210}, {211, 280}, {281, 300}}, rs[:5])
	res, err := l.Append(context.Background(), slices.Clone(evs))
	require.NoError(t, err)
	require.Equal(t, 300, res.Duplicates)
}

// appendNew appends n new events received now, ten at a time, and returns
// them.
func appendNew(t *testing.T, l *Log, n int) []event.Event {
	t.Helper()
	var evs []event.Event
	for i := range n {
		evs = append(evs, event.Event{Source: "s", Provider: "p", ProviderEvent: "delivered", Type: event.Delivered,
			Account: "a", Campaign: "c", Recipient: fmt.Sprint(i), EventTime: time.Now(), ReceivedTime: time.Now()})
	}
	for i := 0; i < n; i += 10 {
		_, err := l.AppendCtx(evs[i:min(i+10, n)]...)
		require.NoError(t, err)
	}
	return evs
}

// Runs never overlap; should two, maintain does not merge them (the
// merged run would take one input's name, and the input's removal would
// delete it).
func TestMaintainSkipsOverlappingRuns(t *testing.T) {
	defer func(old int) { maxRuns = old }(maxRuns)
	maxRuns = 2
	dir := t.TempDir()
	x, err := openDedupeIndex(dir, 10, func(string, ...any) {})
	require.NoError(t, err)
	defer x.closeRuns()
	now := unixNow()
	x.runs = []*dedupeRun{
		writeTestRun(t, dir, 1, 30, []runEnt{{testHash("a"), now + 100}}),
		writeTestRun(t, dir, 11, 40, []runEnt{{testHash("b"), now + 100}}),
		writeTestRun(t, dir, 41, 50, []runEnt{{testHash("c"), now + 100}}),
	}
	x.owned.Store(true)
	x.maintain()
	var ranges [][2]uint64
	for _, r := range x.runs {
		ranges = append(ranges, [2]uint64{r.first, r.last})
	}
	require.Equal(t, [][2]uint64{{1, 30}, {11, 50}}, ranges)
	for _, r := range x.runs {
		_, err := os.Stat(r.path)
		require.NoError(t, err)
	}
}

// A corrupt run that expires whole before its repair leaves the index,
// and the filters, which could not scan it, scan again and turn ready.
func TestFiltersRescanAfterCorruptRunExpires(t *testing.T) {
	dir := t.TempDir()
	now := unixNow()
	old := now - 2*uint32(expirySlack/time.Second)
	var ents []runEnt
	for i := range 200 {
		ents = append(ents, runEnt{testHash(fmt.Sprint(i)), old})
	}
	r := writeTestRun(t, dir, 1, 10, ents)
	_ = r.f.Close()
	FlipByte(t, r.path, runHeader+3) // a block: found by the scan
	r2 := writeTestRun(t, dir, 11, 20, []runEnt{{testHash("b"), now + 100}})
	_ = r2.f.Close()
	x, err := openDedupeIndex(dir, 10, func(string, ...any) {})
	require.NoError(t, err)
	defer x.closeRuns()
	x.owned.Store(true)
	x.fromLog = func(uint64, uint64, uint32, <-chan struct{}, int, func(uint64, []runEnt) error) ([]runEnt, error) {
		return nil, errors.New("the log cannot be read")
	}
	var wg sync.WaitGroup
	d := newDedupeFilters(1, nil, &wg, func(string, ...any) {})
	step := func() {
		d.maintain(x, d.at(time.Now()))
		wg.Wait()
	}
	step() // starts the scan
	step() // takes its result: a corrupt run
	require.True(t, d.rescan)
	require.False(t, d.ready)
	step()
	require.Nil(t, d.scan, "no scan again while the run is there")
	x.maintain() // the repair fails; the run has expired whole and goes
	require.Len(t, x.runs, 1)
	step() // scans again
	step()
	require.True(t, d.ready)
}

package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

// nowEvents are events received now, so that a hash the index rebuilds
// from the log (which expires a horizon after the receive time) is live
// whatever day the test runs.
func nowEvents(from, to int) []event.Event {
	out := events(from, to)
	for i := range out {
		out[i].ReceivedTime = time.Now()
	}
	return out
}

func openLog(t *testing.T, cfg storage.Config) *storage.Log {
	t.Helper()
	l, err := storage.Open(cfg)
	require.NoError(t, err)
	return l
}

// writeBadgerDedupeKeys stores evs' dedupe keys as builds before the
// dedupe index did: 'd' + hash, with a TTL.
func writeBadgerDedupeKeys(t *testing.T, dir string, evs []event.Event) {
	t.Helper()
	db, err := storage.OpenBadger(dir, 8, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(txn *badger.Txn) error {
		for i := range evs {
			h := storage.HashEvent(&evs[i])
			if err := txn.SetEntry(badger.NewEntry(append([]byte{'d'}, h[:]...), []byte{1}).WithTTL(time.Hour)); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, db.Close())
}

func appendAll(t *testing.T, l *storage.Log, evs []event.Event, batch int) (accepted, dups int) {
	t.Helper()
	for i := 0; i < len(evs); i += batch {
		res, err := l.Append(context.Background(), append([]event.Event(nil), evs[i:min(i+batch, len(evs))]...))
		require.NoError(t, err)
		accepted += res.Accepted
		dups += res.Duplicates
	}
	return accepted, dups
}

// Tails become runs and runs are merged as the log grows; every hash
// stays known across the merges and a restart, and new events are new.
func TestDedupeRunsRememberAcrossMergesAndRestarts(t *testing.T) {
	defer storage.SetDedupeRunSizes(40, 3)()
	dir := t.TempDir()
	l := openLog(t, storage.DefaultConfig(dir))
	all := nowEvents(0, 600)
	acc, dups := appendAll(t, l, all, 15)
	require.Equal(t, 600, acc)
	require.Zero(t, dups)
	require.Eventually(t, func() bool {
		st := l.DedupeStats()
		runs, hashes := st.Runs, int(st.RunHashes)
		return runs <= 4 && hashes >= 520
	}, 10*time.Second, 5*time.Millisecond, "runs are written and merged")
	// Redeliveries in the same process: from runs, frozen tails and the tail.
	acc, dups = appendAll(t, l, all, 50)
	require.Zero(t, acc)
	require.Equal(t, 600, dups)
	require.NoError(t, l.Close())

	l = openLog(t, storage.DefaultConfig(dir))
	defer l.Close()
	// Close writes the tail as one more run; the merges it may need come
	// after the committer's first group.
	require.EqualValues(t, 600, l.DedupeStats().RunHashes, "Close writes the tail")
	acc, dups = appendAll(t, l, append(nowEvents(590, 610), all[:30]...), 7)
	require.Equal(t, 10, acc)
	require.Equal(t, 40, dups)
	require.EqualValues(t, 610, l.LastSeq())
	require.Eventually(t, func() bool { return l.DedupeStats().Runs <= 3 }, 10*time.Second, 5*time.Millisecond,
		"the runs the last process left are merged down to maxRuns")
	require.EqualValues(t, 600, l.DedupeStats().RunHashes)
}

// Runs a previous process left past maxRuns are merged once the next one
// appends, not at its first run written or ten minutes later.
func TestDedupeRunsLeftPastMaxRunsAreMerged(t *testing.T) {
	defer storage.SetDedupeRunSizes(40, 100)()
	dir := t.TempDir()
	all, _ := storeAndClose(t, dir, 600, 15)

	// The maintainer has exited with Close: the sizes may change.
	defer storage.SetDedupeRunSizes(40, 3)()
	l := openLog(t, storage.DefaultConfig(dir))
	defer l.Close()
	require.Greater(t, l.DedupeStats().Runs, 3)
	acc, dups := appendAll(t, l, append(nowEvents(600, 601), all[:5]...), 6)
	require.Equal(t, 1, acc)
	require.Equal(t, 5, dups)
	require.Eventually(t, func() bool { return l.DedupeStats().Runs <= 3 }, 10*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 600, l.DedupeStats().RunHashes)
	_, dups = appendAll(t, l, all, 100)
	require.Equal(t, 600, dups)
}

// flipRunByte flips a bit of byte off of the i-th run file (by name).
func flipRunByte(t *testing.T, dir string, i int, off int64) {
	t.Helper()
	runs, err := filepath.Glob(filepath.Join(dir, "dedupe", "*.run"))
	require.NoError(t, err)
	require.Greater(t, len(runs), i)
	storage.FlipByte(t, runs[i], off)
}

// storeAndClose stores n new events, batch at a time, in a log in dir and
// closes it (its tail becomes a run too); it returns the events and the
// index's stats at Close.
func storeAndClose(t *testing.T, dir string, n, batch int) ([]event.Event, storage.DedupeStats) {
	t.Helper()
	l := openLog(t, storage.DefaultConfig(dir))
	all := nowEvents(0, n)
	acc, _ := appendAll(t, l, all, batch)
	require.Equal(t, n, acc)
	require.NoError(t, l.Close())
	return all, l.DedupeStats()
}

// A run found corrupt, at Open (its header) or by a lookup (a block), is
// written again from the log: appends that need it fail meanwhile (never
// a wrong answer), and then every redelivery is known again. A log only
// read leaves the corrupt run as it is.
func TestDedupeCorruptRunIsWrittenAgainFromTheLog(t *testing.T) {
	defer storage.SetDedupeRunSizes(40, 100)()
	dir := t.TempDir()
	all, closed := storeAndClose(t, dir, 200, 10)
	require.Greater(t, closed.Runs, 2)

	flipRunByte(t, dir, 0, 20)    // the first run's header: found at Open
	flipRunByte(t, dir, 1, 48+30) // the second run's first block: found by a lookup
	// Read only (as export and rebuild open it): nothing is written.
	l := openLog(t, storage.DefaultConfig(dir))
	n := 0
	require.NoError(t, l.ReadFrom(context.Background(), 1, func(*event.Event) error { n++; return nil }))
	require.Equal(t, 200, n)
	require.NoError(t, l.Close())
	require.Zero(t, l.DedupeStats().RunRepairs)

	l = openLog(t, storage.DefaultConfig(dir))
	defer l.Close()
	failed := 0
	var res storage.Result
	require.Eventually(t, func() bool {
		// Redeliveries: answered only when the whole index can answer.
		var err error
		res, err = l.Append(context.Background(), append([]event.Event(nil), all...))
		if err != nil {
			failed++
		}
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, res.Accepted)
	require.Equal(t, 200, res.Duplicates)
	st := l.DedupeStats()
	require.EqualValues(t, 2, st.RunRepairs)
	require.Equal(t, closed.RunHashes, st.RunHashes)
	t.Logf("appends failed before the repair: %d", failed)
	acc, dups := appendAll(t, l, nowEvents(195, 210), 5)
	require.Equal(t, 10, acc)
	require.Equal(t, 5, dups)
	// The filters' scan, which met a corrupt run, runs again after the
	// repairs.
	require.Eventually(t, func() bool {
		_, err := l.Append(context.Background(), nowEvents(300, 301))
		require.NoError(t, err)
		return l.DedupeStats().Ready
	}, 10*time.Second, 5*time.Millisecond)
}

// A run whose header is corrupt holds hashes the filters' scan cannot
// read: the filters wait for its repair, and no redelivery of its events
// is taken for new, before the repair or after.
func TestDedupeCorruptHeaderKeepsFiltersWaiting(t *testing.T) {
	defer storage.SetDedupeRunSizes(40, 100)()
	dir := t.TempDir()
	all, _ := storeAndClose(t, dir, 200, 10)
	flipRunByte(t, dir, 0, 20) // the first run's header

	var hold atomic.Bool
	hold.Store(true)
	defer storage.SetRunWriteHook(func(uint64, uint64) error {
		if hold.Load() {
			return errors.New("held back")
		}
		return nil
	})()
	l := openLog(t, storage.DefaultConfig(dir))
	defer l.Close()
	for i := range 20 { // new events, and redeliveries of the corrupt run's
		res, err := l.Append(context.Background(), append(nowEvents(300+i, 301+i), all[i]))
		if err == nil {
			require.Equal(t, 1, res.Duplicates, "a redelivery taken for new")
		}
		require.False(t, l.DedupeStats().Ready, "the filters miss the corrupt run's hashes")
		time.Sleep(2 * time.Millisecond)
	}
	hold.Store(false)
	require.Eventually(t, func() bool {
		_, _ = l.Append(context.Background(), nowEvents(400, 401))
		st := l.DedupeStats()
		return st.Ready && st.RunRepairs == 1
	}, 10*time.Second, 5*time.Millisecond)
	res, err := l.Append(context.Background(), append([]event.Event(nil), all[5:40]...))
	require.NoError(t, err)
	require.Equal(t, 35, res.Duplicates)
}

// Retention keeps the events of a run known to be corrupt, which its
// repair reads: trimmed first, their redeliveries would count again.
func TestTrimKeepsEventsOfCorruptRun(t *testing.T) {
	defer storage.SetDedupeRunSizes(40, 100)()
	dir := t.TempDir()
	all, _ := storeAndClose(t, dir, 200, 10)
	flipRunByte(t, dir, 2, 20) // the third run's header: found at Open

	l := openLog(t, storage.DefaultConfig(dir))
	defer l.Close()
	n, err := l.Trim(context.Background(), 200, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Less(t, n, uint64(81), "the events from the corrupt run's on stay")
	var res storage.Result
	require.Eventually(t, func() bool {
		res, err = l.Append(context.Background(), append([]event.Event(nil), all...))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, res.Accepted, "no redelivery counted again")
	require.EqualValues(t, 1, l.DedupeStats().RunRepairs)
	// Repaired: retention goes on.
	n, err = l.Trim(context.Background(), 200, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Positive(t, n)
}

// A process that dies leaves its tail unwritten: Open rebuilds it from
// the log, and a Trim writes it before the events leave the log.
func TestDedupeTailRebuiltAfterCrash(t *testing.T) {
	dir := t.TempDir()
	defer storage.SetSkipCloseRun(true)()
	l := openLog(t, storage.DefaultConfig(dir))
	first := nowEvents(0, 50)
	acc, _ := appendAll(t, l, first, 10)
	require.Equal(t, 50, acc)
	require.NoError(t, l.Close())
	entries, err := os.ReadDir(filepath.Join(dir, "dedupe"))
	require.NoError(t, err)
	require.Empty(t, entries, "no run written: the crash path")

	l = openLog(t, storage.DefaultConfig(dir))
	acc, dups := appendAll(t, l, append(nowEvents(40, 60), first...), 9)
	require.Equal(t, 10, acc)
	require.Equal(t, 60, dups)
	// Trim everything: the tail goes to a run first, so the hashes
	// outlive the events.
	n, err := l.Trim(context.Background(), l.LastSeq(), time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 60, n)
	st := l.DedupeStats()
	runs, hashes := st.Runs, int(st.RunHashes)
	require.Equal(t, 1, runs)
	require.Equal(t, 60, hashes)
	require.NoError(t, l.Close())

	l = openLog(t, storage.DefaultConfig(dir))
	defer l.Close()
	require.EqualValues(t, 61, l.FirstSeq())
	acc, dups = appendAll(t, l, nowEvents(0, 61), 61)
	require.Equal(t, 1, acc)
	require.Equal(t, 60, dups)
	require.EqualValues(t, 61, l.LastSeq())
}

// A store written by a build that kept the dedupe index as Badger keys
// opens with those keys moved into a run: redeliveries are still
// duplicates, and the keys are gone.
func TestDedupeMigratesBadgerKeys(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, storage.DefaultConfig(dir))
	old := nowEvents(0, 30)
	acc, _ := appendAll(t, l, old, 30)
	require.Equal(t, 30, acc)
	require.NoError(t, l.Close())
	// The older build had no runs, and a 'd' key per stored event.
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "dedupe")))
	writeBadgerDedupeKeys(t, dir, old)

	l = openLog(t, storage.DefaultConfig(dir))
	st := l.DedupeStats()
	runs, hashes := st.Runs, int(st.RunHashes)
	require.Equal(t, 1, runs)
	require.Equal(t, 30, hashes)
	acc, dups := appendAll(t, l, nowEvents(25, 35), 10)
	require.Equal(t, 5, acc)
	require.Equal(t, 5, dups)
	require.NoError(t, l.Close())

	db, err := storage.OpenBadger(dir, 8, nil)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'d'}})
		defer it.Close()
		it.Rewind()
		require.False(t, it.Valid(), "the dedupe keys were dropped")
		return nil
	}))
}

// A run that cannot be written holds back every later one: runs cover
// the log without a gap, or Open would not read the missing events again.
// Retried while the log runs (here it succeeds on the third try), and
// given up at Close (the next Open reads the log again).
func TestDedupeRunWriteFailureLeavesNoGap(t *testing.T) {
	for _, giveUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("give up %v", giveUp), func(t *testing.T) {
			defer storage.SetDedupeRunSizes(10, 10)()
			var tries atomic.Int32
			defer storage.SetRunWriteHook(func(first, _ uint64) error {
				if first == 1 && (giveUp || tries.Add(1) < 3) {
					return errors.New("disk full")
				}
				return nil
			})()
			dir := t.TempDir()
			l := openLog(t, storage.DefaultConfig(dir))
			all := nowEvents(0, 40)
			acc, _ := appendAll(t, l, all, 1)
			require.Equal(t, 40, acc)
			if !giveUp {
				require.Eventually(t, func() bool { return l.DedupeStats().Runs >= 3 }, 10*time.Second, time.Millisecond)
			} else {
				time.Sleep(50 * time.Millisecond)
				require.Zero(t, l.DedupeStats().Runs, "no run after the one that fails")
			}
			require.NoError(t, l.Close())
			l = openLog(t, storage.DefaultConfig(dir))
			defer l.Close()
			acc, dups := appendAll(t, l, all, 40)
			require.Zero(t, acc)
			require.Equal(t, 40, dups)
		})
	}
}

// Badger dedupe keys met again after runs exist (a downgrade, then this
// build again) become a run of the events after the runs; the runs stay.
func TestDedupeMigrationKeepsRuns(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, storage.DefaultConfig(dir))
	all := nowEvents(0, 40)
	appendAll(t, l, all[:30], 30)
	require.NoError(t, l.Close()) // run [1,30]
	// The older build appends 30..34 with their keys.
	l = openLog(t, storage.DefaultConfig(dir))
	defer storage.SetSkipCloseRun(true)()
	appendAll(t, l, all[30:35], 5)
	require.NoError(t, l.Close())
	writeBadgerDedupeKeys(t, dir, all[30:35])
	for range 2 {
		l = openLog(t, storage.DefaultConfig(dir))
		st := l.DedupeStats()
		require.Equal(t, 2, st.Runs)
		require.EqualValues(t, 35, st.RunHashes)
		require.NoError(t, l.Close())
	}
	l = openLog(t, storage.DefaultConfig(dir))
	defer l.Close()
	acc, dups := appendAll(t, l, all[:36], 36)
	require.Equal(t, 1, acc)
	require.Equal(t, 35, dups)
}

// Opening the log only to read it (export, rebuild: default horizon)
// leaves the index alone: serve's longer horizon still holds after.
func TestDedupeReaderLeavesIndexAlone(t *testing.T) {
	dir := t.TempDir()
	serve := storage.DefaultConfig(dir)
	serve.DedupeHorizon = 30 * 24 * time.Hour
	restore := storage.SetSkipCloseRun(true)
	l := openLog(t, serve)
	old := nowEvents(0, 20)
	for i := range old {
		old[i].ReceivedTime = time.Now().Add(-10 * 24 * time.Hour)
	}
	appendAll(t, l, old, 20)
	require.NoError(t, l.Close()) // a crash: the tail is not written
	restore()
	l = openLog(t, storage.DefaultConfig(dir))
	require.Len(t, readAll(t, l, 1), 20)
	require.NoError(t, l.Close())
	l = openLog(t, serve)
	defer l.Close()
	acc, dups := appendAll(t, l, old, 20)
	require.Zero(t, acc)
	require.Equal(t, 20, dups)
}

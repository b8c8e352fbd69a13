package storage

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/zeebo/xxh3"

	"github.com/mailfunnel/mailfunnel/event"
)

// dedupeIndex is the exact dedupe index: the hash of every event the log
// stored within the dedupe horizon, and when it expires.
//
// Why not Badger keys (the first design: a 'd' key per event, committed
// with its log entry): each key's memtable insert walks a 64 MiB skiplist
// of random hashes (2-5 µs of cache misses), then the WAL, the L0 flush and
// every compaction write it again. Under batches that was half of the
// log's CPU; with those writes left out (an experiment, not a correct log)
// the binary acknowledged 1.6x as many events (benchmarks/RESULTS.md,
// stop 14). The index needs far less than an LSM tree: inserts arrive in
// groups, lookups happen only on a Bloom filter's "maybe" (a redelivery
// or a false positive), and hashes leave only by age.
//
// So it has two parts:
//   - The tail: the hashes of the events appended since the newest run,
//     in a table the committer owns (tailtable.go). It needs no file of its own: the log
//     holds those events, and Open rebuilds the tail from them.
//   - Runs: immutable files of (hash, expiry) pairs sorted by hash, with a
//     sparse index of every runBlock-th hash held in memory, so a lookup
//     is one small read. When the tail reaches tailKeys, or Trim or Close
//     needs it, the committer freezes it (with no commit in flight, so
//     every hash in it is committed) and the writer goroutine writes it as
//     a run once the log has synced every event it covers: a run must
//     never hold the hash of an event a power loss could take back, or its
//     redelivery would be dropped. A run covers a range of sequences; the
//     newest run's end is what Open need not rebuild. Past maxRuns runs the
//     two adjacent ones with the fewest hashes are merged, dropping
//     expired hashes; a run whose hashes have all expired goes whole.
//
// Expiry is per hash, as Badger's TTL was: a hash counts until the moment
// it was stored plus the horizon (unix seconds).
type dedupeIndex struct {
	dir      string
	log      func(msg string, args ...any)
	tailKeys int
	// tail and tailFrom are owned by the committer (lookups in the runs,
	// which it may run on two goroutines, do not read the tail). The
	// tail covers the sequences from tailFrom on.
	tail     *tailTable
	tailFrom uint64
	covered  atomic.Uint64 // every stored event up to it is in a run

	mu     sync.RWMutex // guards frozen and runs
	frozen []*frozenTail
	runs   []*dedupeRun // oldest first

	jobs chan *frozenTail
	// synced reports whether the log has synced up to a sequence, and
	// waits for it to change; quit is closed when the committer is gone.
	synced   func(seq uint64) (bool, <-chan struct{})
	stopping <-chan struct{} // closed when the log starts to close
	quit     chan struct{}
	done     chan struct{} // closed when the writer has exited
	kick     chan struct{} // a run was written: maintain
	mdone    chan struct{} // closed when the maintainer has exited
	runsN    atomic.Int64
	runsH    atomic.Int64
	// owned is set once the committer has rebuilt the tail: runs may be
	// written again from the log (repairRuns) with the serving process's
	// horizon, not with a reader's (export, rebuild), which must leave
	// the index alone.
	owned atomic.Bool
	// fromLog returns a run's entries from the log's events (Log.runFromLog).
	fromLog func(first, last uint64, cut uint32, quit <-chan struct{}, chunk int, emit func(last uint64, ents []runEnt) error) ([]runEnt, error)
	repairs atomic.Int64
	// healed counts the corrupt runs that left the index, repaired or
	// expired whole: the filters scan again after one.
	healed atomic.Int64
	// repairAt and repairWait pace the repairs that fail (maintainer
	// only): a repair reads the run's whole range of the log.
	repairAt   time.Time
	repairWait time.Duration
}

// frozenTail is a tail on its way to a run.
type frozenTail struct {
	keys        *tailTable
	first, last uint64
	done        chan<- error // told when the run is written (or not); may be nil
}

// Sizes of the index. Variables so that tests can make runs quickly.
var (
	// tailKeys is the default of Config.DedupeTailKeys: a table of 1M
	// 20-byte entries at most half full is about 40 MiB, and after a
	// crash about that many events are read again at Open.
	tailKeys = 1 << 20
	// maxRuns bounds the runs a lookup may read before they are merged.
	maxRuns = 10
)

// tailMargin is how far past tailKeys a tail may fill before the
// committer freezes it (it checks between groups).
const tailMargin = 1 << 15

const (
	runMagic  = "MFDEDUP2"
	runHeader = 48 // magic, count, first, last, maxExp, pad, checksum
	runEntry  = 20 // hash, expiry (uint32 BE)
	runBlock  = 128
	runIndex  = 16 // per block: its first hash's 8-byte prefix, its xxh3
	runSuffix = ".run"
	// dedupeDirName is the index's directory inside the log's Badger
	// directory (Badger ignores what it does not name).
	dedupeDirName = "dedupe"
)

type runEnt struct {
	h   Hash
	exp uint32
}

// expiryOf converts a Badger-style expiry (unix seconds, 0: never) to the
// index's.
func expiryOf(unix uint64) uint32 {
	if unix == 0 || unix > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(unix)
}

func unixNow() uint32 { return expiryOf(uint64(time.Now().Unix())) }

// openDedupeIndex opens the runs in dir (creating it), dropping what a
// crash left half done: temporary files, and runs a merge had replaced.
func openDedupeIndex(dir string, tailKeys int, logf func(string, ...any)) (*dedupeIndex, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dedupe index: %w", err)
	}
	x := &dedupeIndex{dir: dir, log: logf, tailKeys: tailKeys, tail: newTailTable(),
		jobs: make(chan *frozenTail, 4), quit: make(chan struct{}), done: make(chan struct{}),
		kick: make(chan struct{}, 1), mdone: make(chan struct{})}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("dedupe index: %w", err)
	}
	for _, de := range names {
		name := de.Name()
		path := filepath.Join(dir, name)
		switch {
		case strings.HasSuffix(name, ".tmp"):
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("dedupe index: %w", err)
			}
		case strings.HasSuffix(name, runSuffix):
			r, err := openRun(path)
			if errors.Is(err, errRunCorrupt) {
				// Written again from the log once the committer owns
				// the index (repairRuns); lookups that need it fail
				// until then.
				logf("dedupe index: a run is corrupt", "err", err)
				err = nil
			}
			if err != nil {
				x.closeRuns()
				return nil, err
			}
			x.runs = append(x.runs, r)
		}
	}
	slices.SortFunc(x.runs, func(a, b *dedupeRun) int { return cmp.Or(cmp.Compare(a.last, b.last), cmp.Compare(b.first, a.first)) })
	// A merge writes the merged run before it removes its inputs: an
	// input that survived a crash is inside the merged run's range.
	all := slices.Clone(x.runs)
	kept := x.runs[:0]
	remove := func(r *dedupeRun) error {
		_ = r.f.Close()
		if err := os.Remove(r.path); err != nil {
			x.runs = all // closes them all, closed ones again: harmless
			x.closeRuns()
			return fmt.Errorf("dedupe index: %w", err)
		}
		return nil
	}
	for _, r := range all {
		// r's range contains the runs before it whose first is not before
		// its own.
		i := len(kept)
		for i > 0 && r.first <= kept[i-1].first {
			i--
		}
		if covers(kept[i:], r.first, r.last) {
			// The runs it contains cover its range, each intact: a
			// merge's inputs, or a repair's runs, that a crash left
			// beside it. They stay: it may be the corrupt run a repair
			// replaced (its damage in a block Open does not read), and
			// a merge only has to run again.
			if err := remove(r); err != nil {
				return nil, err
			}
			continue
		}
		for _, old := range kept[i:] {
			if err := remove(old); err != nil {
				return nil, err
			}
		}
		kept = append(kept[:i], r)
	}
	x.runs = kept
	if n := len(x.runs); n > 0 {
		x.covered.Store(x.runs[n-1].last)
	}
	x.tailFrom = x.covered.Load() + 1
	x.published()
	return x, nil
}

// covers reports whether runs (in order) cover first..last without a gap,
// each intact.
func covers(runs []*dedupeRun, first, last uint64) bool {
	next := first
	for _, r := range runs {
		if r.bad.Load() || r.first != next {
			return false
		}
		next = r.last + 1
	}
	return len(runs) > 0 && next == last+1
}

func (x *dedupeIndex) closeRuns() {
	for _, r := range x.runs {
		_ = r.f.Close()
	}
	x.runs = nil
}

func (x *dedupeIndex) published() {
	var h int64
	for _, r := range x.runs {
		h += int64(r.n)
	}
	x.runsN.Store(int64(len(x.runs)))
	x.runsH.Store(h)
}

// containsOld reports whether the frozen tails or the runs hold h, not
// expired at now: the index but its tail, which the committer asks
// itself (addNew). Safe on several goroutines at once.
func (x *dedupeIndex) containsOld(h Hash, now uint32) (bool, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, f := range x.frozen {
		if exp, ok := f.keys.get(h); ok && exp > now {
			return true, nil
		}
	}
	var buf []byte
	for i := len(x.runs) - 1; i >= 0; i-- {
		r := x.runs[i]
		if r.maxExp <= now {
			continue
		}
		if buf == nil {
			buf = make([]byte, runBlock*runEntry)
		}
		exp, ok, err := r.find(h, buf)
		if err != nil {
			if errors.Is(err, errRunCorrupt) {
				x.kickMaintainer() // to repair it
			}
			return false, err
		}
		if ok && exp > now {
			return true, nil
		}
	}
	return false, nil
}

// add records h, stored with expiry exp, in the tail (committer only).
func (x *dedupeIndex) add(h Hash, exp uint32) { x.tail.put(h, exp) }

// addNew records h with expiry exp in the tail unless the tail holds it,
// not expired at now, and reports whether it did (committer only).
func (x *dedupeIndex) addNew(h Hash, exp, now uint32) bool { return !x.tail.insert(h, exp, now) }

// remove takes h out of the tail again: its commit failed (committer only).
func (x *dedupeIndex) remove(h Hash) { x.tail.remove(h) }

// freeze hands the tail, which covers the sequences up to last, to the
// writer, and starts a new one. The caller guarantees that every event of
// the tail is committed. done, if not nil, is told when the run is
// written. freeze blocks while the writer has too many tails to write.
func (x *dedupeIndex) freeze(last uint64, done chan<- error) {
	if last < x.tailFrom {
		if done != nil {
			done <- nil // nothing to cover
		}
		return
	}
	ft := &frozenTail{keys: x.tail, first: x.tailFrom, last: last, done: done}
	x.mu.Lock()
	x.frozen = append(x.frozen, ft)
	x.mu.Unlock()
	x.tail = newTailTableFor(x.tailKeys + tailMargin)
	x.tailFrom = last + 1
	x.jobs <- ft
}

// writer writes frozen tails as runs, in order. It exits when jobs is
// closed. Merges run on maintainer, so that a long one (runs of tens of
// millions of hashes) holds up no tail, and so no append.
func (x *dedupeIndex) writer() {
	defer close(x.done)
	for ft := range x.jobs {
		// Runs must cover the log without a gap (Open reads it again
		// only after the newest run), so a tail that fails is retried
		// before any later one is written. Later tails wait in jobs,
		// and then the committer waits in freeze: appends stop while
		// runs cannot be written (a full or failing disk).
		err := x.writeTail(ft)
		for backoff := 100 * time.Millisecond; err != nil && !errors.Is(err, errNotSynced); backoff = min(2*backoff, 10*time.Second) {
			x.log("dedupe index: a run was not written; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
				err = x.writeTail(ft)
				continue
			case <-x.quit:
			}
			break
		}
		if ft.done != nil {
			ft.done <- err
		}
		if err != nil {
			// Only at Close: the next Open reads the log again from
			// the newest run on. No later tail may be written.
			x.log("dedupe index: a run was not written; the next start reads its events again", "err", err)
			for ft := range x.jobs {
				if ft.done != nil {
					ft.done <- err
				}
			}
			return
		}
		x.kickMaintainer()
	}
}

func (x *dedupeIndex) kickMaintainer() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

// maintainer keeps the runs merged and within the horizon: after each
// run written, and every ten minutes. It exits when quit is closed.
func (x *dedupeIndex) maintainer() {
	defer close(x.mdone)
	tick := time.NewTicker(10 * time.Minute)
	defer tick.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-x.kick:
		case <-tick.C:
		case <-retry:
		case <-x.quit:
			return
		}
		retry = nil
		if wait := x.maintain(); wait > 0 {
			retry = time.After(wait)
		}
	}
}

// errNotSynced reports a tail whose events the log did not sync before
// it closed.
var errNotSynced = errors.New("dedupe index: the log closed before its events were synced")

func (x *dedupeIndex) writeTail(ft *frozenTail) error {
	// Once the log closes, its last sync comes within moments, or (after
	// a failed one) never: then the run is given up, so that Close does
	// not wait for it (the committer may wait in freeze).
	var giveUp <-chan time.Time
	stopping := x.stopping
	for {
		ok, changed := x.synced(ft.last)
		if ok {
			break
		}
		select {
		case <-changed:
		case <-stopping:
			stopping, giveUp = nil, time.After(5*time.Second)
		case <-giveUp:
			return errNotSynced
		case <-x.quit:
			if ok, _ := x.synced(ft.last); !ok {
				// The next Open reads the log again from the newest run.
				return errNotSynced
			}
		}
	}
	r, err := writeRun(x.dir, ft.first, ft.last, ft.keys.sorted())
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.runs = append(x.runs, r)
	x.frozen = slices.DeleteFunc(x.frozen, func(f *frozenTail) bool { return f == ft })
	x.published()
	x.mu.Unlock()
	x.covered.Store(ft.last)
	return nil
}

// writeRun writes ents (in hash order) as the run covering first..last.
func writeRun(dir string, first, last uint64, ents []runEnt) (*dedupeRun, error) {
	w, err := createRun(dir, first, last)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if err := w.add(e); err != nil {
			w.abort()
			return nil, err
		}
	}
	if runWriteHook != nil {
		if err := runWriteHook(first, last); err != nil {
			w.abort()
			return nil, err
		}
	}
	return w.finish()
}

// badFirst returns the first sequence of the oldest run marked bad, or
// MaxUint64: Trim keeps the events from there on, which its repair reads.
func (x *dedupeIndex) badFirst() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	first := uint64(math.MaxUint64)
	for _, r := range x.runs {
		if r.bad.Load() {
			first = min(first, r.first)
		}
	}
	return first
}

// repairRuns writes every run marked bad again (repair): the hashes of
// the log's events in its range, and those of its blocks that are intact
// (retention may have removed their events), as one run under its name or
// several that cover its range. The old handle closes once no lookup can
// hold it. It returns how long to wait before retrying one that failed
// (0: none failed).
func (x *dedupeIndex) repairRuns(cut uint32) time.Duration {
	x.mu.RLock()
	var bad []*dedupeRun
	for _, r := range x.runs {
		if r.bad.Load() {
			bad = append(bad, r)
		}
	}
	x.mu.RUnlock()
	if len(bad) == 0 {
		x.repairWait = 0
		return 0
	}
	if wait := time.Until(x.repairAt); wait > 0 {
		return wait
	}
	failed := false
	for _, r := range bad {
		start := time.Now()
		ms, err := x.repair(r, cut)
		if err != nil {
			select {
			case <-x.quit: // cut short by Close
				return 0
			default:
			}
			failed = true
			x.log("dedupe index: writing a corrupt run again failed; lookups that need it fail meanwhile", "run", filepath.Base(r.path), "err", err)
			continue
		}
		// With several runs, r's file has a name of its own: it goes
		// before they take its place (lookups read it through its open
		// handle meanwhile), so that no two runs overlap (merges name
		// their output by range). Should the removal not be durable,
		// Open finds the new runs covering r, and drops r.
		if len(ms) > 1 {
			if err := os.Remove(r.path); err != nil {
				for _, m := range ms {
					_ = m.f.Close()
					_ = os.Remove(m.path)
				}
				failed = true
				x.log("dedupe index: a repaired run could not be replaced; lookups that need it fail meanwhile", "run", filepath.Base(r.path), "err", err)
				continue
			}
			if err := syncDir(x.dir); err != nil {
				x.log("dedupe index: syncing the runs' directory failed", "err", err)
			}
		}
		x.mu.Lock()
		k := slices.Index(x.runs, r)
		x.runs = slices.Replace(x.runs, k, k+1, ms...)
		x.published()
		x.repairs.Add(1) // with the swap: whoever sees the new runs sees the count
		x.healed.Add(1)
		x.mu.Unlock()
		_ = r.f.Close()
		hashes := 0
		for _, m := range ms {
			hashes += m.n
		}
		x.log("dedupe index: a corrupt run was written again from the log and its intact blocks", "run", filepath.Base(r.path), "runs", len(ms), "hashes", hashes, "took", time.Since(start).Round(time.Millisecond))
	}
	if !failed {
		x.repairWait = 0
		return 0
	}
	x.repairWait = min(max(2*x.repairWait, time.Second), time.Minute)
	x.repairAt = time.Now().Add(x.repairWait)
	return x.repairWait
}

// repairChunk bounds the events whose hashes a repair holds in memory
// (20 bytes each, and the sort's): a merged run can cover days of the
// log. (A variable so that a test can shrink it.)
var repairChunk = 1 << 22

// repair writes run r again, as runs covering its range: the hashes of the
// log's events in it, repairChunk events a run, without those expired at
// cut; the last run also holds r's intact blocks (a hash in both keeps the
// later expiry), whose events retention may have taken. A run covering
// r's whole range has r's name and replaces its file; the others are
// removed if the repair fails. Should the process die before r leaves
// Open finds the new runs covering r's range, and drops r.
func (x *dedupeIndex) repair(r *dedupeRun, cut uint32) ([]*dedupeRun, error) {
	var out []*dedupeRun
	fail := func(err error) ([]*dedupeRun, error) {
		for _, m := range out {
			_ = m.f.Close()
			_ = os.Remove(m.path)
		}
		return nil, err
	}
	from := r.first
	fromLog, err := x.fromLog(r.first, r.last, cut, x.quit, repairChunk, func(last uint64, ents []runEnt) error {
		m, err := writeRun(x.dir, from, last, ents)
		if err != nil {
			return err
		}
		out = append(out, m)
		from = last + 1
		return nil
	})
	if err != nil {
		return fail(err)
	}
	w, err := createRun(x.dir, from, r.last)
	if err != nil {
		return fail(err)
	}
	var rr *runReader
	if r.f != nil { // a corrupt header or index leaves no block to trust
		rr = r.reader()
		rr.skipCorrupt = true
	}
	next := func() (runEnt, bool, error) {
		for rr != nil {
			e, ok, err := rr.next()
			if !ok || err != nil || e.exp > cut {
				return e, ok, err
			}
		}
		return runEnt{}, false, nil
	}
	old, ok, err := next()
	for err == nil && (ok || len(fromLog) > 0) {
		c := -1 // the log's entry first
		if ok && len(fromLog) > 0 {
			c = bytes.Compare(fromLog[0].h[:], old.h[:])
		} else if ok {
			c = 1
		}
		e := old
		switch {
		case c < 0:
			e, fromLog = fromLog[0], fromLog[1:]
		case c == 0:
			e.exp = max(e.exp, fromLog[0].exp)
			fromLog = fromLog[1:]
		}
		if err = w.add(e); err == nil && c >= 0 {
			old, ok, err = next()
		}
	}
	if err == nil && runWriteHook != nil {
		err = runWriteHook(from, r.last)
	}
	if err != nil {
		w.abort()
		return fail(err)
	}
	m, err := w.finish()
	if err != nil {
		return fail(err)
	}
	return append(out, m), nil
}

// maintain writes corrupt runs again (repairRuns), drops runs whose
// hashes have all expired (never the newest: it records what the log need
// not be read for) and merges runs past maxRuns. Errors are logged: the
// runs stay as they were, correct. It returns when to retry a repair that
// failed (0: none). Only once the committer owns the index: a log opened
// to be read leaves it as it is.
func (x *dedupeIndex) maintain() time.Duration {
	if !x.owned.Load() {
		return 0
	}
	now := unixNow()
	cut := uint32(max(int64(now)-int64(expirySlack/time.Second), 0))
	wait := x.repairRuns(cut)
	x.mu.Lock()
	var gone []*dedupeRun
	kept := x.runs[:0]
	for i, r := range x.runs {
		if r.maxExp < cut && i < len(x.runs)-1 {
			gone = append(gone, r)
			if r.bad.Load() {
				x.healed.Add(1)
			}
			continue
		}
		kept = append(kept, r)
	}
	clear(x.runs[len(kept):])
	x.runs = kept
	x.published()
	runs := slices.Clone(x.runs)
	x.mu.Unlock()
	removeRuns(gone, x.log)
	for len(runs) > max(maxRuns, 2) {
		// The two adjacent runs with the fewest hashes, neither waiting
		// for its repair.
		i := -1
		for j := 0; j+1 < len(runs); j++ {
			// (Runs never overlap; should they, a merge would be named
			// as one of its inputs.)
			if runs[j].bad.Load() || runs[j+1].bad.Load() || runs[j].last >= runs[j+1].first {
				continue
			}
			if i < 0 || runs[j].n+runs[j+1].n < runs[i].n+runs[i+1].n {
				i = j
			}
		}
		if i < 0 {
			return wait
		}
		a, b := runs[i], runs[i+1]
		m, err := mergeRuns(x.dir, a, b, cut, x.quit)
		if err != nil {
			select {
			case <-x.quit: // cut short by Close
			default:
				x.log("dedupe index: merging runs failed", "err", err)
				if errors.Is(err, errRunCorrupt) {
					// Marked bad: repaired at the next maintenance.
					wait = time.Second
				}
			}
			return wait
		}
		x.mu.Lock()
		k := slices.Index(x.runs, a)
		x.runs = slices.Replace(x.runs, k, k+2, m)
		x.published()
		runs = slices.Clone(x.runs)
		x.mu.Unlock()
		// No lookup holds the inputs once the lock was taken.
		removeRuns([]*dedupeRun{a, b}, x.log)
	}
	return wait
}

func removeRuns(rs []*dedupeRun, logf func(string, ...any)) {
	for _, r := range rs {
		_ = r.f.Close()
		if err := os.Remove(r.path); err != nil {
			logf("dedupe index: removing a run failed", "path", r.path, "err", err)
		}
	}
}

// close stops the writer after it has written what was frozen, and
// closes the runs. The committer must have exited.
func (x *dedupeIndex) close() {
	close(x.quit)
	close(x.jobs)
	<-x.done
	<-x.mdone
	x.mu.Lock()
	x.closeRuns()
	x.mu.Unlock()
}

// snapshot opens its own handle on every run and copies the tail and
// frozen tails, for the dedupe filters' scan (committer only).
func (x *dedupeIndex) snapshot() (runs []*dedupeRun, tail []runEnt, err error) {
	add := func(e runEnt) { tail = append(tail, e) }
	x.tail.each(add)
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, f := range x.frozen {
		f.keys.each(add)
	}
	for _, r := range x.runs {
		c := *r
		if r.f == nil {
			// Its header or index is corrupt: the copy must fail the
			// scan as the run fails lookups (with a file and no index
			// it would read as empty).
			runs = append(runs, &c)
			continue
		}
		f, err := os.Open(r.path)
		if err != nil {
			for _, o := range runs {
				_ = o.f.Close()
			}
			return nil, nil, fmt.Errorf("dedupe index: %w", err)
		}
		c.f = f
		runs = append(runs, &c)
	}
	return runs, tail, nil
}

// dedupeRun is one run file:
//
//	header: "MFDEDUP2", count u64, first seq u64, last seq u64,
//	        max expiry u32, 4 zero bytes, checksum u64 (all BE)
//	count x (hash [16]byte, expiry u32 BE), sorted by hash, in blocks of
//	        runBlock entries
//	per block: the first 8 bytes of its first hash, the xxh3 of the block
//
// The checksum is the xxh3 of the header's first 40 bytes and the index,
// which Open reads and checks; every read of a block checks the block's
// own. A lookup reads one block, so a whole-file checksum would be
// checked only by a scan (before: the filters' scan at start-up), and a
// corrupt run would answer lookups wrongly until then: a redelivery
// counted again, or a new event dropped as one.
//
// A run found corrupt (at Open, or by any read) is marked bad: lookups
// that need it fail, so that nothing is acknowledged on a wrong answer,
// and the maintainer writes it again from the log's events (repairRun).
type dedupeRun struct {
	f           *os.File // nil for a run whose header or index is corrupt
	path        string
	n           int
	first, last uint64
	maxExp      uint32
	sparse      []uint64
	sums        []uint64
	// bad is set when a read finds the run corrupt; shared by the copies
	// the filters' scan makes.
	bad *atomic.Bool
}

// errRunCorrupt is wrapped by the errors of a read that found a run
// corrupt.
var errRunCorrupt = errors.New("dedupe run is corrupt")

// errRunFormat reports a run of another format (another build's): it is
// refused, not repaired, which would quietly rewrite it in this one's.
var errRunFormat = errors.New("dedupe run of another format")

// corrupt marks r bad and returns the error saying so.
func (r *dedupeRun) corrupt(what string) error {
	r.bad.Store(true)
	return fmt.Errorf("dedupe index: %s: %s: %w (it is written again from the log)", filepath.Base(r.path), what, errRunCorrupt)
}

func runName(first, last uint64) string { return fmt.Sprintf("%016x-%016x%s", first, last, runSuffix) }

func blocksOf(n int) int { return (n + runBlock - 1) / runBlock }

// parseRunHeader checks a run's header against its size.
func parseRunHeader(h []byte, size int64) (n int, first, last uint64, maxExp uint32, sum uint64, err error) {
	if len(h) < runHeader || string(h[:8]) != runMagic {
		return 0, 0, 0, 0, 0, errors.New("not a dedupe run")
	}
	cnt := binary.BigEndian.Uint64(h[8:])
	first, last = binary.BigEndian.Uint64(h[16:]), binary.BigEndian.Uint64(h[24:])
	maxExp, sum = binary.BigEndian.Uint32(h[32:]), binary.BigEndian.Uint64(h[40:])
	if cnt > uint64(size)/runEntry {
		return 0, 0, 0, 0, 0, fmt.Errorf("dedupe run claims %d hashes in %d bytes", cnt, size)
	}
	n = int(cnt)
	if want := int64(runHeader + n*runEntry + runIndex*blocksOf(n)); want != size || first > last {
		return 0, 0, 0, 0, 0, fmt.Errorf("dedupe run of %d hashes is %d bytes, want %d", n, size, want)
	}
	return n, first, last, maxExp, sum, nil
}

// parseRunName returns the range of sequences a run's file name says it
// covers.
func parseRunName(name string) (first, last uint64, ok bool) {
	var suffix string
	if n, err := fmt.Sscanf(name, "%016x-%016x%s", &first, &last, &suffix); n != 3 || err != nil || suffix != runSuffix || runName(first, last) != name {
		return 0, 0, false
	}
	return first, last, first <= last
}

// openRun opens a run and reads and checks its header and index. A run
// whose header or index is corrupt but whose name gives its range opens
// bad (without a file), for the maintainer to write again.
func openRun(path string) (*dedupeRun, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dedupe index: %w", err)
	}
	r, err := readRun(f, path)
	if err != nil {
		_ = f.Close()
		first, last, ok := parseRunName(filepath.Base(path))
		if !ok || errors.Is(err, errRunFormat) {
			return nil, fmt.Errorf("dedupe index: %s: %w", filepath.Base(path), err)
		}
		// maxExp unknown: never taken for expired.
		r = &dedupeRun{path: path, first: first, last: last, maxExp: math.MaxUint32, bad: new(atomic.Bool)}
		return r, r.corrupt(err.Error())
	}
	return r, nil
}

func readRun(f *os.File, path string) (*dedupeRun, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var h [runHeader]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return nil, err
	}
	if string(h[:7]) == runMagic[:7] && h[7] != runMagic[7] {
		// Another format, or this one with its version byte corrupt: then
		// the rest checks out with the byte set back.
		g := h
		g[7] = runMagic[7]
		if _, err := decodeRun(f, path, g, st.Size()); err == nil {
			return nil, errors.New("its format byte is corrupt")
		}
		return nil, fmt.Errorf("%w: format %q, this build reads %q", errRunFormat, h[7], runMagic[7])
	}
	return decodeRun(f, path, h, st.Size())
}

// decodeRun checks a run's header h against the file's size, and reads
// and checks its index.
func decodeRun(f *os.File, path string, h [runHeader]byte, size int64) (*dedupeRun, error) {
	n, first, last, maxExp, sum, err := parseRunHeader(h[:], size)
	if err != nil {
		return nil, err
	}
	idx := make([]byte, runIndex*blocksOf(n))
	if _, err := f.ReadAt(idx, int64(runHeader+n*runEntry)); err != nil {
		return nil, err
	}
	d := xxh3.New()
	_, _ = d.Write(h[:40])
	_, _ = d.Write(idx)
	if d.Sum64() != sum {
		return nil, errors.New("header and index do not match their checksum")
	}
	r := &dedupeRun{f: f, path: path, n: n, first: first, last: last, maxExp: maxExp,
		sparse: make([]uint64, blocksOf(n)), sums: make([]uint64, blocksOf(n)), bad: new(atomic.Bool)}
	for i := range r.sparse {
		r.sparse[i] = binary.BigEndian.Uint64(idx[runIndex*i:])
		r.sums[i] = binary.BigEndian.Uint64(idx[runIndex*i+8:])
	}
	return r, nil
}

// readBlock reads block b into buf and checks it. A run with a corrupt
// block still answers from its other blocks until it is repaired.
func (r *dedupeRun) readBlock(b int, buf []byte) ([]byte, error) {
	if r.f == nil {
		return nil, r.corrupt("its header or index is corrupt")
	}
	cnt := min(runBlock, r.n-b*runBlock)
	blk := buf[:cnt*runEntry]
	if _, err := r.f.ReadAt(blk, int64(runHeader+b*runBlock*runEntry)); err != nil {
		return nil, fmt.Errorf("dedupe index: read %s: %w", filepath.Base(r.path), err)
	}
	if xxh3.Hash(blk) != r.sums[b] {
		return nil, r.corrupt(fmt.Sprintf("block %d does not match its checksum", b))
	}
	return blk, nil
}

// find returns h's expiry if the run holds it. buf holds a block.
func (r *dedupeRun) find(h Hash, buf []byte) (uint32, bool, error) {
	if r.f == nil {
		return 0, false, r.corrupt("its header or index is corrupt")
	}
	p := binary.BigEndian.Uint64(h[:8])
	// Hashes with prefix p are in the last block starting below p, or in
	// blocks starting at p.
	i := sort.Search(len(r.sparse), func(i int) bool { return r.sparse[i] >= p })
	for b := max(i-1, 0); b < len(r.sparse) && (b < i || r.sparse[b] == p); b++ {
		blk, err := r.readBlock(b, buf)
		if err != nil {
			return 0, false, err
		}
		cnt := len(blk) / runEntry
		j := sort.Search(cnt, func(j int) bool { return bytes.Compare(blk[j*runEntry:j*runEntry+16], h[:]) >= 0 })
		if j < cnt && bytes.Equal(blk[j*runEntry:j*runEntry+16], h[:]) {
			return binary.BigEndian.Uint32(blk[j*runEntry+16:]), true, nil
		}
	}
	return 0, false, nil
}

// runReader reads a run's entries in order, a block at a time, checking
// each block.
type runReader struct {
	r    *dedupeRun
	buf  []byte
	blk  []byte // the rest of the current block
	blkN int    // the next block to read
	// skipCorrupt passes over corrupt blocks instead of failing (a
	// repair keeps the intact ones).
	skipCorrupt bool
}

func (r *dedupeRun) reader() *runReader {
	return &runReader{r: r, buf: make([]byte, runBlock*runEntry)}
}

// next returns the next entry; ok is false after the last one (or with
// the error that a block could not be read or is corrupt).
func (rr *runReader) next() (e runEnt, ok bool, err error) {
	for len(rr.blk) == 0 {
		if rr.r.f == nil {
			return e, false, rr.r.corrupt("its header or index is corrupt")
		}
		if rr.blkN == len(rr.r.sparse) {
			return e, false, nil
		}
		rr.blk, err = rr.r.readBlock(rr.blkN, rr.buf)
		rr.blkN++
		if err != nil && !(rr.skipCorrupt && errors.Is(err, errRunCorrupt)) {
			return e, false, err
		}
	}
	b := rr.blk[:runEntry]
	rr.blk = rr.blk[runEntry:]
	return runEnt{Hash(b[:16]), binary.BigEndian.Uint32(b[16:])}, true, nil
}

// each calls fn for every entry of the run in order, checking each block
// before its entries.
func (r *dedupeRun) each(fn func(runEnt) error) error {
	rr := r.reader()
	for {
		e, ok, err := rr.next()
		if !ok || err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// runWriter writes a run from entries in hash order.
type runWriter struct {
	dir, tmp    string
	f           *os.File
	w           *bufio.Writer
	blk         *xxh3.Hasher // of the current block
	n           int
	first, last uint64
	maxExp      uint32
	index       []byte
	prev        Hash
}

func createRun(dir string, first, last uint64) (*runWriter, error) {
	tmp := filepath.Join(dir, runName(first, last)+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("dedupe index: %w", err)
	}
	w := &runWriter{dir: dir, tmp: tmp, f: f, w: bufio.NewWriterSize(f, 1<<20), blk: xxh3.New(), first: first, last: last}
	if _, err := w.w.Write(make([]byte, runHeader)); err != nil {
		w.abort()
		return nil, fmt.Errorf("dedupe index: %w", err)
	}
	return w, nil
}

func (w *runWriter) add(e runEnt) error {
	if w.n > 0 && bytes.Compare(e.h[:], w.prev[:]) <= 0 {
		return errors.New("dedupe index: run entries out of order")
	}
	if w.n%runBlock == 0 {
		w.endBlock()
		w.index = append(w.index, e.h[:8]...)
	}
	var b [runEntry]byte
	copy(b[:], e.h[:])
	binary.BigEndian.PutUint32(b[16:], e.exp)
	_, _ = w.blk.Write(b[:])
	if _, err := w.w.Write(b[:]); err != nil {
		return fmt.Errorf("dedupe index: %w", err)
	}
	w.prev = e.h
	w.n++
	w.maxExp = max(w.maxExp, e.exp)
	return nil
}

// endBlock records the checksum of the block written so far, if any.
func (w *runWriter) endBlock() {
	if w.n > 0 {
		w.index = binary.BigEndian.AppendUint64(w.index, w.blk.Sum64())
		w.blk.Reset()
	}
}

func (w *runWriter) abort() {
	_ = w.f.Close()
	_ = os.Remove(w.tmp)
}

// finish writes the sparse index and the header, syncs the file, renames
// it into place and syncs the directory, then opens the run for lookups.
func (w *runWriter) finish() (*dedupeRun, error) {
	fail := func(err error) (*dedupeRun, error) {
		w.abort()
		return nil, fmt.Errorf("dedupe index: %w", err)
	}
	w.endBlock()
	if _, err := w.w.Write(w.index); err != nil {
		return fail(err)
	}
	if err := w.w.Flush(); err != nil {
		return fail(err)
	}
	h := make([]byte, runHeader)
	copy(h, runMagic)
	binary.BigEndian.PutUint64(h[8:], uint64(w.n))
	binary.BigEndian.PutUint64(h[16:], w.first)
	binary.BigEndian.PutUint64(h[24:], w.last)
	binary.BigEndian.PutUint32(h[32:], w.maxExp)
	d := xxh3.New()
	_, _ = d.Write(h[:40])
	_, _ = d.Write(w.index)
	binary.BigEndian.PutUint64(h[40:], d.Sum64())
	if _, err := w.f.WriteAt(h, 0); err != nil {
		return fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return fail(err)
	}
	if err := w.f.Close(); err != nil {
		return fail(err)
	}
	path := filepath.Join(w.dir, runName(w.first, w.last))
	if err := os.Rename(w.tmp, path); err != nil {
		_ = os.Remove(w.tmp)
		return nil, fmt.Errorf("dedupe index: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		return nil, fmt.Errorf("dedupe index: %w", err)
	}
	return openRun(path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// mergeRuns writes the union of adjacent runs a and b (a older) without
// the hashes expired at now (the caller leaves the slack the filters
// leave, against a clock set ahead); a hash in both keeps the later
// expiry. It gives up when quit is closed.
func mergeRuns(dir string, a, b *dedupeRun, now uint32, quit <-chan struct{}) (*dedupeRun, error) {
	w, err := createRun(dir, min(a.first, b.first), max(a.last, b.last))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*dedupeRun, error) {
		w.abort()
		return nil, err
	}
	ra, rb := a.reader(), b.reader()
	ea, oka, err := ra.next()
	if err != nil {
		return fail(err)
	}
	eb, okb, err := rb.next()
	if err != nil {
		return fail(err)
	}
	for n := 0; oka || okb; n++ {
		if n%65536 == 0 {
			select {
			case <-quit:
				return fail(errors.New("dedupe index: merge stopped: the log is closing"))
			default:
			}
		}
		var e runEnt
		c := 1 // which runs the entry comes from: -1 a, 1 b, 0 both
		if oka && okb {
			c = bytes.Compare(ea.h[:], eb.h[:])
		} else if oka {
			c = -1
		}
		switch c {
		case 0:
			e = runEnt{ea.h, max(ea.exp, eb.exp)}
		case -1:
			e = ea
		default:
			e = eb
		}
		if c <= 0 {
			if ea, oka, err = ra.next(); err != nil {
				return fail(err)
			}
		}
		if c >= 0 {
			if eb, okb, err = rb.next(); err != nil {
				return fail(err)
			}
		}
		if e.exp > now {
			if err := w.add(e); err != nil {
				return fail(err)
			}
		}
	}
	return w.finish()
}

// skipCloseRun leaves the tail unwritten at Close (tests of the crash
// path); runWriteHook, when set, can fail a run's write (tests).
var (
	skipCloseRun bool
	runWriteHook func(first, last uint64) error
)

// openIndex opens the dedupe index, moves a store's Badger dedupe keys
// (written by builds before the index) into a run, and rebuilds the tail
// from the events the runs do not cover.
func (l *Log) openIndex() error {
	x, err := openDedupeIndex(filepath.Join(l.cfg.Dir, dedupeDirName), l.cfg.DedupeTailKeys, l.log.Info)
	if err != nil {
		return err
	}
	x.stopping = l.stop
	x.fromLog = l.runFromLog
	x.synced = func(seq uint64) (bool, <-chan struct{}) {
		ch := l.Changed()
		return l.durable.Load() >= seq, ch
	}
	l.index = x
	if err := l.migrateDedupeKeys(); err != nil {
		x.closeRuns()
		return err
	}
	return nil
}

// initTail rebuilds the dedupe index's tail from the events no run
// covers. The committer calls it before its first group, not Open: a log
// opened only to be read (export, rebuild) leaves the index alone, and
// does not rebuild it with a horizon other than serve's.
func (l *Log) initTail() error {
	if l.tailBuilt {
		return nil
	}
	x := l.index
	x.owned.Store(true)
	// The runs a previous process left may be past maxRuns, expired while
	// it was down, or corrupt: the maintainer need not wait for the first
	// run written (or ten minutes).
	x.kickMaintainer()
	x.tail = newTailTableFor(x.tailKeys + tailMargin)
	from := max(x.tailFrom, l.FirstSeq())
	last := l.lastSeq.Load()
	if from > last {
		l.tailBuilt = true
		return nil
	}
	start := time.Now()
	now := uint64(max(start.Unix(), 0))
	n := 0
	err := l.scanFrom(context.Background(), from, event.DecodeView, func(e *event.Event) error {
		if exp := l.storedExpiry(e); exp > now {
			x.add(HashEvent(e), expiryOf(exp))
			n++
		}
		if e.Seq >= last {
			return ErrStop
		}
		return nil
	})
	if err != nil {
		x.tail = newTailTable()
		return fmt.Errorf("dedupe index: rebuild from the log: %w", err)
	}
	l.tailBuilt = true
	l.log.Info("dedupe index: tail rebuilt from the log", "from_seq", from, "events", last-from+1, "hashes", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// storedExpiry is when the hash of a stored event leaves the index: it was
// stored at about its receive time, so a horizon after that, as it
// would have in the run.
func (l *Log) storedExpiry(e *event.Event) uint64 {
	return uint64(max(e.ReceivedTime.Add(l.cfg.DedupeHorizon).Unix(), 0)) + 1
}

// runFromLog reads the hashes of the log's events first..last, without
// those expired at cut, for runs written again: every chunk events (short
// of last) it hands emit the entries so far, in hash order, with the
// sequence they reach; it returns the rest, in hash order. Events that
// retention removed are gone, and are said to be.
func (l *Log) runFromLog(first, last uint64, cut uint32, quit <-chan struct{}, chunk int, emit func(last uint64, ents []runEnt) error) ([]runEnt, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	from := max(first, l.FirstSeq())
	if from > first {
		l.log.Warn("dedupe index: retention removed events of a corrupt run; their redeliveries will not be recognised", "from_seq", first, "to_seq", min(from-1, last))
	}
	var ents []runEnt
	n := 0
	if from <= last {
		err := l.scanFrom(ctx, from, event.DecodeView, func(e *event.Event) error {
			if e.Seq > last {
				return ErrStop
			}
			if exp := l.storedExpiry(e); exp > uint64(cut) {
				ents = append(ents, runEnt{HashEvent(e), expiryOf(exp)})
			}
			if e.Seq == last {
				return ErrStop
			}
			if n++; n >= chunk {
				if err := emit(e.Seq, sortRunEnts(ents)); err != nil {
					return err
				}
				ents, n = ents[:0], 0
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return sortRunEnts(ents), nil
}

// sortRunEnts sorts ents by hash and keeps one entry per hash, with the
// latest expiry (an event stored twice: its first copy had expired from
// the index).
func sortRunEnts(ents []runEnt) []runEnt {
	slices.SortFunc(ents, func(a, b runEnt) int { return bytes.Compare(a.h[:], b.h[:]) })
	out := ents[:0]
	for _, e := range ents {
		if n := len(out); n > 0 && out[n-1].h == e.h {
			out[n-1].exp = max(out[n-1].exp, e.exp)
			continue
		}
		out = append(out, e)
	}
	return out
}

// migrateDedupeKeys writes the Badger dedupe keys of an older build's
// store ('d' + hash, with a TTL) as one run covering every stored event,
// then drops them. A crash in between leaves the keys, and the next Open
// writes the same run again.
func (l *Log) migrateDedupeKeys() error {
	prefix := []byte{prefixDedupe}
	var w *runWriter
	keys := 0
	// The keys belong to the events after the runs (an older build
	// appended them, perhaps after a newer one had written runs): the
	// run covers those. With no such event, the keys are of events the
	// runs hold already (a crash after the run was written, before the
	// keys were dropped), and only go.
	first, last := l.index.covered.Load()+1, l.lastSeq.Load()
	if last < first {
		if err := l.db.DropPrefix(prefix); err != nil {
			return fmt.Errorf("dedupe index: drop the migrated dedupe keys: %w", err)
		}
		return nil
	}
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 1+len(Hash{}) {
				return fmt.Errorf("dedupe key of %d bytes", len(k))
			}
			if w == nil {
				var err error
				if w, err = createRun(l.index.dir, first, last); err != nil {
					return err
				}
			}
			if err := w.add(runEnt{Hash(k[1:]), expiryOf(item.ExpiresAt())}); err != nil {
				return err
			}
			keys++
		}
		return nil
	})
	if w == nil {
		return err
	}
	if err != nil {
		w.abort()
		return fmt.Errorf("dedupe index: migrate dedupe keys: %w", err)
	}
	r, err := w.finish()
	if err != nil {
		return err
	}
	x := l.index
	x.runs = slices.DeleteFunc(x.runs, func(o *dedupeRun) bool {
		if o.path == r.path {
			_ = o.f.Close()
			return true
		}
		return false
	})
	x.runs = append(x.runs, r)
	x.covered.Store(r.last)
	x.tailFrom = r.last + 1
	x.published()
	if err := l.db.DropPrefix(prefix); err != nil {
		return fmt.Errorf("dedupe index: drop the migrated dedupe keys: %w", err)
	}
	l.log.Info("dedupe index: moved the store's dedupe keys into a run", "keys", keys)
	return nil
}

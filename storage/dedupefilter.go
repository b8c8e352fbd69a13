package storage

import (
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailfunnel/mailfunnel/internal/bloom"
)

// dedupeFilters summarises the dedupe index in memory: Bloom filters that
// hold the hash of every event stored within the horizon, so that most new
// events need no lookup in the index to be known as new.
//
// Why: the committer is the log's serial stage, and a group's dedupe reads
// (when the index was Badger keys: one Get per event, through the
// memtables and every level's tables, nearly all of them finding nothing)
// were most of its time. With the reads skipped altogether (an experiment,
// not a correct log) the batch benchmark acknowledged 1.35x as many events
// (benchmarks/RESULTS.md, stop 12). The index's runs are files now, read
// by a lookup, so the filters matter as much. A filter test is one cache
// miss per filter.
//
// Exactly-once rests on one property: every hash the index holds is in a
// filter, so a filter's "no" is always right. A "maybe" (a stored event,
// or a false positive) falls back to the index. Therefore:
//   - hashes are added when a group is staged, before its commit; a
//     commit that fails leaves extra hashes, which only cost a lookup;
//   - hashes stored by an earlier process are found by a scan of the
//     index (its runs, and the tail Open rebuilt from the log) at the
//     first append, in the background; until it ends the filters are not
//     asked (ready is false) and every candidate is looked up, while the
//     committer adds what it stages;
//   - a filter is dropped only when every hash in it has expired, by the
//     wall clock and by the monotonic one, an hour after the last (see
//     filterGen), so no live hash leaves.
//
// Filters are added as they fill, up to maxFilters; past that, the newest
// takes every key and its false-positive rate rises: more reads, never a
// wrong answer. Owned by the committer goroutine, which alone tests and
// adds; other goroutines read only stats.
type dedupeFilters struct {
	perFilter  int // keys each filter is sized for
	maxFilters int
	gens       []*filterGen // oldest first
	ready      bool         // gens hold every live key in the store
	started    bool         // the scan is started (or not needed)
	scan       chan scanResult
	// rescan is set when the scan found a run corrupt: it starts again
	// once a corrupt run has left the index since it started (scanHealed).
	rescan     bool
	scanHealed int64
	stop       <-chan struct{}
	wg         *sync.WaitGroup // the Log's: Close waits for the scan
	log        func(msg string, args ...any)
	stats      dedupeStats // for DedupeStats, read from other goroutines
	epoch      time.Time   // the monotonic origin of instants
}

type dedupeStats struct {
	ready          atomic.Bool
	filters, bytes atomic.Int64
	skipped, reads atomic.Uint64
}

// DedupeStats describes the dedupe filters (see Config.DedupeFilterMB).
type DedupeStats struct {
	// Ready is true once the filters hold every stored hash and answer
	// for new events (after the scan of the stored keys that follows the
	// first append of a process; at once on an empty log).
	Ready bool
	// Filters and Bytes are the filters held and their memory.
	Filters int
	Bytes   int64
	// Skipped counts new events the filters knew to be new, Reads the
	// events looked up in the dedupe index's runs instead (before the
	// filters were ready, or on a "maybe": a redelivery or a false
	// positive). An event whose hash is in the index's in-memory tail
	// (stored since the newest run) is neither.
	Skipped, Reads uint64
	// Runs and RunHashes are the dedupe index's run files and the hashes
	// they hold (dedupeindex.go); the hashes of the newest events, up to
	// about a million, are in memory and in no run yet.
	Runs      int
	RunHashes int64
	// RunRepairs counts runs found corrupt and written again from the
	// log's events.
	RunRepairs int64
}

// DedupeStats returns the dedupe filters' state and counters.
func (l *Log) DedupeStats() DedupeStats {
	st := &l.filters.stats
	return DedupeStats{Ready: st.ready.Load(), Filters: int(st.filters.Load()), Bytes: st.bytes.Load(),
		Skipped: st.skipped.Load(), Reads: st.reads.Load(),
		Runs: int(l.index.runsN.Load()), RunHashes: l.index.runsH.Load(), RunRepairs: l.index.repairs.Load()}
}

// published updates the gauges of stats after the filter list changed.
func (d *dedupeFilters) published() {
	var b int64
	for _, g := range d.gens {
		b += int64(g.f.Bytes())
	}
	d.stats.filters.Store(int64(len(d.gens)))
	d.stats.bytes.Store(b)
	d.stats.ready.Store(d.ready)
}

type filterGen struct {
	f *bloom.Filter
	n int
	// maxExpiry is the latest expiry (unix seconds) of a key in f;
	// math.MaxUint64 when one never expires. monoExpiry is the same moment
	// by the monotonic clock (see instant). A filter goes only when both
	// clocks say its keys have expired: by the wall clock alone, a clock
	// set a day ahead and then corrected would drop filters whose keys
	// the index again holds as live.
	maxExpiry  uint64
	monoExpiry time.Duration
}

// instant is a moment by both clocks: unix seconds, and the monotonic time
// since the filters were made (which no clock setting moves).
type instant struct {
	wall int64
	mono time.Duration
}

// at returns t (from time.Now, which carries a monotonic reading) as an
// instant.
func (d *dedupeFilters) at(t time.Time) instant { return instant{t.Unix(), t.Sub(d.epoch)} }

type scanResult struct {
	gens []*filterGen
	keys int
	took time.Duration
	err  error
}

// dedupeFilterKeys is the most keys one filter is sized for: 8M keys,
// 10 MiB. (A variable so that tests can make filters fill quickly.)
var dedupeFilterKeys = 8 << 20

// expirySlack is how long after its last key's expiry a filter is kept,
// against a clock that moves back.
const expirySlack = time.Hour

// newDedupeFilters sizes the filters for a budget of mb MiB; mb < 0
// turns them off (every candidate is read).
func newDedupeFilters(mb int, stop <-chan struct{}, wg *sync.WaitGroup, log func(string, ...any)) *dedupeFilters {
	d := &dedupeFilters{stop: stop, wg: wg, log: log, epoch: time.Now()}
	if mb < 0 {
		d.started = true // never ready: no scan
		return d
	}
	budgetKeys := mb << 20 * 8 / bloom.BitsPerKey
	d.perFilter = max(1, min(dedupeFilterKeys, budgetKeys))
	d.maxFilters = max(1, budgetKeys/d.perFilter)
	return d
}

// filterKey returns h as the two halves bloom.Filter takes, the first of
// which picks the block. That is h's second half: the store iterates, and
// the scan adds, the keys in hash order, so a filter the scan fills holds
// one slice of the first half's range, and blocks picked by the first
// half would take all its keys in a few blocks (85% false positives in
// TestDedupeFiltersKnowStoredEvents, which caught it).
func filterKey(h Hash) (block, bits uint64) {
	return binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint64(h[:8])
}

// mayContain reports whether h may be in the store: false only when it
// certainly is not.
func (d *dedupeFilters) mayContain(h Hash) bool {
	if !d.ready {
		return true
	}
	a, b := filterKey(h)
	for i := len(d.gens) - 1; i >= 0; i-- {
		if d.gens[i].f.Test(a, b) {
			return true
		}
	}
	return false
}

// add records h, stored at now with expiry expiresAt (0: never).
func (d *dedupeFilters) add(h Hash, expiresAt uint64, now instant) {
	if d.perFilter == 0 {
		return // off
	}
	var g *filterGen
	if n := len(d.gens); n > 0 {
		g = d.gens[n-1]
	}
	if g == nil || g.n >= d.perFilter && len(d.gens) < d.maxFilters {
		g = &filterGen{f: bloom.New(d.perFilter), monoExpiry: math.MinInt64}
		d.gens = append(d.gens, g)
		d.published()
	}
	g.f.TestAndAdd(filterKey(h))
	g.n++
	mono := time.Duration(math.MaxInt64)
	if expiresAt == 0 {
		expiresAt = math.MaxUint64
	} else if left := int64(expiresAt) - now.wall; left < int64(math.MaxInt64/time.Second) {
		mono = now.mono + time.Duration(left)*time.Second
	}
	g.maxExpiry = max(g.maxExpiry, expiresAt)
	g.monoExpiry = max(g.monoExpiry, mono)
}

// maintain runs before each group: it starts the scan of the stored keys
// at the first group, takes its result when it is done, and drops the
// filters whose keys have all expired.
func (d *dedupeFilters) maintain(x *dedupeIndex, now instant) {
	if !d.started || d.rescan && x.healed.Load() != d.scanHealed {
		d.started, d.rescan = true, false
		d.startScan(x)
	}
	if d.scan != nil {
		select {
		case r := <-d.scan:
			d.scan = nil
			if r.err != nil {
				// Not ready: every candidate is read, as without
				// filters. Correct, only slower. A corrupt run is
				// written again from the log, and then scanned.
				if d.rescan = errors.Is(r.err, errRunCorrupt); d.rescan {
					x.kickMaintainer() // to repair it
				}
				d.log("dedupe filter: scan of the stored keys failed; every event is looked up in the store", "err", r.err, "scan_again_after_repair", d.rescan)
				break
			}
			d.gens = append(r.gens, d.gens...)
			d.mergeNewest()
			d.ready = true
			d.published()
			d.log("dedupe filter ready", "stored_keys", r.keys, "took", r.took.Round(time.Millisecond), "filters", len(d.gens))
		default:
		}
	}
	cut := now.wall - int64(expirySlack/time.Second)
	if cut <= 0 {
		return
	}
	kept := d.gens[:0]
	for _, g := range d.gens {
		if g.maxExpiry >= uint64(cut) || now.mono-expirySlack <= g.monoExpiry {
			kept = append(kept, g)
		}
	}
	if len(kept) < len(d.gens) {
		clear(d.gens[len(kept):])
		d.gens = kept
		d.published()
	}
}

// mergeNewest folds the newest filter into the one before it when both
// fit in one: after a restart the scan's last filter usually has room for
// what the committer added meanwhile, which saves a filter's memory.
func (d *dedupeFilters) mergeNewest() {
	n := len(d.gens)
	if n < 2 {
		return
	}
	a, b := d.gens[n-2], d.gens[n-1]
	if a.n+b.n > d.perFilter || !a.f.Union(b.f) {
		return
	}
	a.n += b.n
	a.maxExpiry = max(a.maxExpiry, b.maxExpiry)
	a.monoExpiry = max(a.monoExpiry, b.monoExpiry)
	d.gens[n-1] = nil
	d.gens = d.gens[:n-1]
}

// startScan reads every live hash of the dedupe index (its runs, and the
// tail Open rebuilt) into filters of its own, on a goroutine; an empty
// index needs no scan.
func (d *dedupeFilters) startScan(x *dedupeIndex) {
	d.scanHealed = x.healed.Load()
	runs, tail, err := x.snapshot()
	if err != nil {
		d.log("dedupe filter: the index cannot be read; every event is looked up in it", "err", err)
		return
	}
	if len(runs) == 0 && len(tail) == 0 {
		d.ready = true
		d.published()
		return
	}
	d.scan = make(chan scanResult, 1)
	// Added from the committer, which the WaitGroup already counts, so
	// never concurrently with a Wait at zero.
	d.wg.Add(1)
	ch, tmp := d.scan, &dedupeFilters{perFilter: d.perFilter, maxFilters: d.maxFilters, epoch: d.epoch}
	go func() {
		defer d.wg.Done()
		ch <- scanDedupe(runs, tail, tmp, d.stop)
	}()
}

var errScanStopped = errors.New("log closed during the dedupe scan")

// scanDedupe adds every live hash of runs and tail to tmp's filters, and
// closes the runs (its own handles).
func scanDedupe(runs []*dedupeRun, tail []runEnt, tmp *dedupeFilters, stop <-chan struct{}) scanResult {
	start := time.Now()
	now := tmp.at(start)
	unix := uint32(max(now.wall, 0))
	keys := 0
	add := func(e runEnt) error {
		if keys%65536 == 0 {
			select {
			case <-stop:
				return errScanStopped
			default:
			}
		}
		if e.exp > unix {
			tmp.add(e.h, uint64(e.exp), now)
			keys++
		}
		return nil
	}
	var err error
	for _, r := range runs {
		if err == nil {
			err = r.each(add)
		}
		_ = r.f.Close()
	}
	for _, e := range tail {
		if err != nil {
			break
		}
		err = add(e)
	}
	return scanResult{gens: tmp.gens, keys: keys, took: time.Since(start), err: err}
}

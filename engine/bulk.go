package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/axiomhq/hyperloglog"
	"github.com/zeebo/xxh3"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

// Bulk mode (Config.Bulk) builds a state store from scratch, for a rebuild
// or a replay. Nobody reads that store until its catch-up completes, and a
// crash discards it (both start from an empty directory), which allows two
// things the normal mode cannot do.
//
// Write-back: a batch need not be written atomically with its checkpoint,
// nor at all. A dirty record is written only when it must leave the cache
// (eviction) and at the end of CatchUp, once however many events touched
// it. The checkpoint is written only by that final flush, with everything
// else, so the store on disk never claims more than it holds.
//
// Passes: a rebuild's per-recipient working set (a record per campaign of
// the recipient and one over all campaigns) is far larger than the
// recipient cache at scale, and with events in log order nearly every
// access misses the cache: a Badger read and an eviction write, or at
// best a record decoded from the cache's second tier and encoded back
// (reccache.go), per record and event. So CatchUp splits the work
// (catchUpSpilled): a first pass over the log applies the global part of
// each event (see apply) and spills the events into buckets by a hash of
// their recipient (spill.go); then each recipient pass applies the
// recipient part of the events of a group of buckets, in log order. A
// group's records fit the cache's first tier, where each is decoded once,
// changed in place by all its events, and written once. The counter
// changes of those passes are spilled too, by minute, and added in time
// order at the end (countDeltas). The first pass reads the log on a
// goroutine of its own, and a group's records are written on another
// while the next group applies (handOffRecs). On a rebuild of 10M events
// over 2M recipients all this made the rebuild about 2.5x as fast as
// partitioned passes over the log, with the same bytes in the store
// (benchmarks/RESULTS.md, stop 16).

// partMode selects the parts of an event's effect apply applies.
type partMode uint8

const (
	partAll    partMode = iota // both: the normal mode
	partGlobal                 // the global part only (first bulk pass)
	partRecip                  // the recipient part only (bucket passes)
)

// parts reports which parts of an event of recipient r to apply.
func (e *Engine) parts(r string) (global, recip bool) {
	switch e.part {
	case partGlobal:
		return true, false
	case partRecip:
		return false, r != ""
	}
	return true, true
}

// countRecords adds the recipient records an event touches to the first
// pass's estimate.
func (e *Engine) countRecords(cid uint32, r string, funnel bool) {
	if r == "" {
		return
	}
	add := func(k []byte) { e.records.InsertHash(xxh3.Hash(k)) }
	// Bounce groups and suppressions live in the same records, and every
	// event that moves them also reaches a funnel metric.
	if funnel {
		add(appendRecKey(e.kbuf[:0], cid, r))
		add(appendRecKey(e.kbuf[:0], allCampaigns, r))
	}
}

// catchUpBulk is CatchUp in bulk mode: it applies the log from the
// checkpoint to its current end in passes (see above), then writes
// everything.
func (e *Engine) catchUpBulk(ctx context.Context, progress func(applied uint64)) error {
	last := e.src.LastSeq()
	from := e.applied.Load() + 1
	if from > last {
		return nil
	}
	n := last - from + 1
	report := func(done uint64) {
		if progress != nil {
			progress(from - 1 + done)
		}
	}
	// A range too small to touch more records than the first tier of the
	// cache holds (at most two per event) needs one pass.
	hot := uint64(min(e.cfg.RecipientCache, hotRecs))
	target := max(hot*3/4, 1)
	if n*2 <= target {
		e.part = partAll
		if err := e.bulkPass(ctx, from, last, nil); err != nil {
			return err
		}
	} else if err := e.catchUpSpilled(ctx, from, last, target, report); err != nil {
		return err
	}
	e.mu.Lock()
	err := e.commit()
	e.mu.Unlock()
	if err != nil {
		return err
	}
	report(n)
	return nil
}

// catchUpSpilled is catchUpBulk for a range that may touch more
// recipient records than the cache's first tier holds (target of them):
// a first pass over the log applies the global part of each event, counts
// the records, and spills the events into buckets by recipient
// (spill.go); then each recipient pass applies the recipient part of the
// events of a group of buckets, merged back into log order. The buckets
// are as many as a bucket's records need to fit target if the range
// touched two records per event (the most it can), at most
// maxSpillBuckets; the groups are as large as the counted records allow.
// Past the buckets' cap, a group's records overflow into the second tier
// and then into the store (evictions).
func (e *Engine) catchUpSpilled(ctx context.Context, from, last, target uint64, report func(done uint64)) (err error) {
	n := last - from + 1
	// progressAt reports progress as a fraction of the range: the first pass,
	// the recipient passes and the counters count a third each.
	progressAt := func(third int, x float64) { report(uint64((float64(third) + min(x, 1)) / 3 * float64(n))) }
	nb := int(min((n*2+target-1)/target, maxSpillBuckets))
	sp, err := newSpill(filepath.Dir(filepath.Clean(e.cfg.Dir)), nb)
	if err != nil {
		return err
	}
	defer sp.close()
	lifts := e.liftQ
	e.liftQ = nil
	defer func() {
		e.part, e.spill, e.records, e.deltas = partAll, nil, nil, nil
		if err != nil {
			e.liftQ = lifts
		}
	}()
	e.part, e.spill, e.records = partGlobal, sp, hyperloglog.New16()
	err = e.bulkPass(ctx, from, last, func(i uint64) { progressAt(0, float64(i)/float64(n)) })
	records := e.records.Estimate()
	e.spill, e.records = nil, nil
	if err == nil {
		err = sp.finish()
	}
	if err != nil {
		return err
	}
	total := 0
	for _, c := range sp.n {
		total += c
	}
	// Buckets per group: as many as fit target, with the estimate's error
	// (under 1% for HyperLogLog at this precision) well inside the slack
	// between target and the tier's bound.
	per := max(1, int(target*uint64(nb)/max(records, 1)))
	e.log.Info("engine: bulk catch-up", "events", n, "records", records, "spilled", total,
		"spill_bytes", sp.off, "buckets", nb, "passes", (nb+per-1)/per)
	tmin, tmax := int64(math.MaxInt64), int64(math.MinInt64)
	for _, c := range e.camps {
		tmin, tmax = min(tmin, c.First), max(tmax, c.Last)
	}
	cd, err := newCountDeltas(filepath.Dir(filepath.Clean(e.cfg.Dir)), tmin, tmax)
	if err != nil {
		return err
	}
	defer cd.sp.close()
	e.part, e.deltas = partRecip, cd
	// bg is the background write of the previous group's records; it is
	// waited for before the next hand-off, and before returning.
	var bg chan error
	defer func() {
		if bg != nil {
			if werr := <-bg; err == nil {
				err = werr
			}
		}
	}()
	done := 0
	group := make([]int, 0, per)
	for first := 0; first < nb; first += per {
		group = group[:0]
		for b := first; b < min(first+per, nb); b++ {
			group = append(group, b)
		}
		e.liftQ = e.liftQ[:0]
		for _, l := range lifts {
			if b := spillBucket(l.Recipient, nb); b >= first && b < first+per {
				e.liftQ = append(e.liftQ, l)
			}
		}
		err := e.bucketPass(ctx, sp, group, last, func(i int) {
			progressAt(1, float64(done+i)/float64(max(total, 1)))
		})
		if err == nil {
			// The group's records are not touched again.
			err = e.handOffRecs(&bg)
		}
		if err != nil {
			return err
		}
		for _, b := range group {
			done += sp.n[b]
		}
	}
	// The events are applied: their file's space is free from here.
	if err := sp.close(); err != nil {
		return err
	}
	if bg != nil {
		werr := <-bg
		if bg = nil; werr != nil {
			return werr
		}
	}
	e.liftQ = e.liftQ[:0]
	for _, l := range lifts {
		if l.Seq > last {
			e.liftQ = append(e.liftQ, l)
		}
	}
	e.part, e.deltas = partAll, nil
	if err := cd.sp.finish(); err != nil {
		return err
	}
	nt := len(cd.sp.n)
	for b := range nt {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.mu.Lock()
		err := cd.each(b, func(s []byte, t, d int64) error { return e.addCount(s, t, d) })
		if err == nil {
			err = e.endBulkBatch()
		}
		e.mu.Unlock()
		if err != nil {
			return err
		}
		progressAt(2, float64(b+1)/float64(nt))
	}
	return nil
}

// spillBucket is the bucket of normalized recipient r.
func spillBucket(r string, buckets int) int {
	return int(xxh3.HashString(r) % uint64(buckets))
}

// spillEvent adds ev to its recipient's bucket in sp, if it has a
// recipient, encoding it in buf (returned for reuse).
func spillEvent(sp *spill, buf []byte, ev *event.Event) ([]byte, error) {
	r := event.NormalizeRecipient(ev.Recipient)
	if r == "" {
		return buf, nil
	}
	buf = event.Append(buf[:0], ev)
	return buf, sp.add(spillBucket(r, len(sp.n)), buf)
}

// eventSeq is the log sequence of an encoded event (event.Append: a
// version byte, the type, the flags, then the sequence as a uvarint),
// read without decoding the rest, to merge buckets in log order.
func eventSeq(rec []byte) uint64 {
	if len(rec) < 4 {
		return 0
	}
	v, _ := binary.Uvarint(rec[3:])
	return v
}

// bucketPass applies the recipient part of the events of buckets bs. They
// are a subsequence of the log, which apply accepts in this mode (sparse):
// a lift due between two of them is applied before the second, as in the
// log's order, and the ones due by last at the end. It leaves pending at
// the range's events, as a pass over the whole range would.
func (e *Engine) bucketPass(ctx context.Context, sp *spill, bs []int, last uint64, progress func(done int)) error {
	e.pending = 0
	e.sparse = true
	defer func() { e.sparse = false }()
	batchStart, i := 0, 0
	err := sp.read(bs, eventSeq, func(rec []byte) error {
		var ev event.Event
		if _, err := event.Decode(rec, &ev); err != nil {
			return fmt.Errorf("engine: bulk spill: %w", err)
		}
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if err := e.applyDueLifts(ev.Seq - 1); err != nil {
			return err
		}
		if err := e.apply(&ev); err != nil {
			return err
		}
		i++
		if e.pending-batchStart >= e.cfg.BatchEvents || len(e.dirtyRecs)+len(e.dirtyCnts) >= e.maxDirty() {
			if err := e.endBulkBatch(); err != nil {
				return err
			}
			batchStart = e.pending
			progress(i)
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.applyDueLifts(last); err != nil {
		return err
	}
	e.pending = int(last - e.applied.Load())
	return nil
}

// bulkPass applies events from..last (one part of them, per e.part),
// ending a batch (evictions, progress) every BatchEvents events. It leaves
// pending at the events applied and the applied sequence unchanged: the
// next pass starts again at from, and the final commit moves applied.
//
// Reading the log, decoding the events and spilling them (e.spill) take
// about a third of a first pass's CPU and depend on nothing apply does,
// so a goroutine of their own does them, a batch of events ahead.
func (e *Engine) bulkPass(ctx context.Context, from, last uint64, progress func(done uint64)) error {
	e.pending = 0
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const batchLen, buffers = 1024, 4
	full := make(chan []event.Event, buffers)
	free := make(chan []event.Event, buffers)
	for range buffers {
		free <- make([]event.Event, 0, batchLen)
	}
	sp := e.spill
	var rerr error
	go func() {
		defer close(full)
		var sbuf []byte
		b := <-free
		send := func() error {
			select {
			case full <- b:
			case <-rctx.Done():
				return rctx.Err()
			}
			select {
			case b = <-free:
				b = b[:0]
				return nil
			case <-rctx.Done():
				return rctx.Err()
			}
		}
		rerr = e.src.ReadFrom(rctx, from, func(ev *event.Event) error {
			if sp != nil {
				var err error
				if sbuf, err = spillEvent(sp, sbuf, ev); err != nil {
					return err
				}
			}
			// The event's strings are its own (ReadFrom decodes with
			// event.Decode), so a copy of the struct keeps them.
			b = append(b, *ev)
			if len(b) == batchLen || ev.Seq >= last {
				if err := send(); err != nil {
					return err
				}
			}
			if ev.Seq >= last {
				return storage.ErrStop
			}
			return nil
		})
		// The log ended before last, or reading or spilling failed: apply
		// the events before that, so that an error of theirs comes first,
		// as it would in log order.
		if len(b) > 0 && rctx.Err() == nil {
			if serr := send(); rerr == nil {
				rerr = serr
			}
		}
	}()
	batchStart := 0
	var aerr error
	for b := range full {
		if aerr == nil {
			if aerr = e.applyBulkBatch(b, &batchStart, progress); aerr != nil {
				cancel()
			}
		}
		free <- b
	}
	// full is closed: the reader is done, and rerr is set.
	switch {
	case aerr != nil:
		return aerr
	case rerr != nil:
		return rerr
	}
	if got := e.applied.Load() + uint64(e.pending); got != last {
		return fmt.Errorf("engine: bulk pass ended at seq %d, want %d", got, last)
	}
	return nil
}

// applyBulkBatch applies a batch of bulkPass's events.
func (e *Engine) applyBulkBatch(evs []event.Event, batchStart *int, progress func(done uint64)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range evs {
		if err := e.apply(&evs[i]); err != nil {
			return err
		}
		if e.pending-*batchStart >= e.cfg.BatchEvents || len(e.dirtyRecs)+len(e.dirtyCnts) >= e.maxDirty() {
			if err := e.endBulkBatch(); err != nil {
				return err
			}
			*batchStart = e.pending
			if progress != nil {
				progress(uint64(e.pending))
			}
		}
	}
	return nil
}

// endBulkBatch ends a batch within a bulk pass: it writes only what leaves
// the caches.
func (e *Engine) endBulkBatch() error {
	return e.writeBulk(func(txn writer) (bool, error) {
		if err := e.evictBulk(txn); err != nil {
			return false, err
		}
		// Sketches are few and small until there are many minutes; past
		// twice the sketch cache they are written and dropped.
		if len(e.sketches) <= 2*sketchCache || len(e.dirtySketches) == 0 {
			return false, nil
		}
		return true, e.stageSketches(txn, e.applied.Load())
	})
}

// handOffRecs writes a finished group's records and empties the cache
// for the next group. When they are all in the first tier (the groups are
// sized for it), a goroutine writes them (writeRecs) while the next group
// applies: staging them was a sixth of the applying goroutine's time, and
// the next group's records are other keys. *bg is that write; the one
// before is waited for first, so one group's records at most are in
// flight. Otherwise (the second tier holds some) they are written here.
func (e *Engine) handOffRecs(bg *chan error) error {
	if *bg != nil {
		err := <-*bg
		*bg = nil
		if err != nil {
			return err
		}
	}
	if e.cold.len() > 0 {
		return e.dropRecs()
	}
	recs := e.recs
	e.recs = make(map[string]*recEntry, len(recs))
	// The dirty list only counts, in bulk mode; it must not keep records
	// the writer now owns.
	e.dirtyRecs = e.dirtyRecs[:0]
	e.dirtyBytes = 0
	done := make(chan error, 1)
	*bg = done
	go func() { done <- e.writeRecs(recs) }()
	return nil
}

// writeRecs writes the dirty records of recs with a write batch and a
// stage arena of its own. It reads nothing of e but the state store and
// the campaign catalogue, which the recipient passes do not change.
func (e *Engine) writeRecs(recs map[string]*recEntry) error {
	var a stageArena
	wb := e.db.NewWriteBatch()
	defer wb.Cancel()
	cnt := &countingWriter{w: bulkBatch{wb}}
	for _, re := range recs {
		if re.dirty {
			re.dirty = false
			if err := e.stageRec(cnt, &a, re); err != nil {
				return err
			}
		}
	}
	if err := cnt.commit(); err != nil {
		return fmt.Errorf("write engine state: %w", err)
	}
	e.statsMu.Lock()
	e.stats.Keys += uint64(cnt.n)
	e.statsMu.Unlock()
	return nil
}

// dropRecs writes the dirty recipient records and empties their cache.
func (e *Engine) dropRecs() error {
	err := e.writeBulk(func(txn writer) (bool, error) {
		for _, re := range e.recs {
			if re.dirty {
				re.dirty = false
				if err := e.stageRec(txn, &e.arena, re); err != nil {
					return false, err
				}
			}
		}
		return false, e.cold.flushDirty(e.spillRec(txn))
	})
	clear(e.recs)
	e.cold.reset()
	return err
}

// writeBulk runs stage with a write batch and writes what it staged. Its
// result says whether the dirty sketches were staged.
func (e *Engine) writeBulk(stage func(writer) (sketches bool, err error)) error {
	e.arena = stageArena{} // the previous write is done with its chunks
	wb := e.db.NewWriteBatch()
	defer wb.Cancel()
	cnt := &countingWriter{w: bulkBatch{wb}}
	sketches, err := stage(cnt)
	if err != nil {
		return err
	}
	if cnt.n > 0 {
		if err := cnt.commit(); err != nil {
			return fmt.Errorf("write engine state: %w", err)
		}
		// Written records are read back from the store: see the writes.
		if e.rtxn != nil {
			e.rtxn.Discard()
			e.rtxn = nil
		}
	}
	if sketches {
		e.sketchesWritten(e.applied.Load())
	}
	// Entries stay dirty across batches; the lists only count what became
	// dirty in this one (for maxDirty).
	e.dirtyRecs = e.dirtyRecs[:0]
	e.dirtyCnts = e.dirtyCnts[:0]
	e.dirtyBytes = 0
	e.gen++
	e.statsMu.Lock()
	e.stats.Keys += uint64(cnt.n)
	e.statsMu.Unlock()
	return nil
}

// commitBulk is the final commit of a bulk catch-up (and of a lift, which
// a bulk engine does not get in practice): it writes all dirty state and
// the checkpoint.
func (e *Engine) commitBulk() error {
	if e.pending == 0 && len(e.journal) == 0 {
		return nil
	}
	seq := e.applied.Load() + uint64(e.pending)
	err := e.writeBulk(func(txn writer) (bool, error) {
		if err := e.flushBulk(txn, seq); err != nil {
			return false, err
		}
		// Every sketch is written now (the dirty ones here, the others
		// when they left the cache): they are complete up to seq.
		return false, e.stageSketches(txn, seq)
	})
	if err != nil {
		return fmt.Errorf("commit engine state at seq %d: %w", seq, err)
	}
	e.sketchesWritten(seq)
	if err := e.evictClean(); err != nil {
		return err
	}
	e.committed(seq, 0)
	return nil
}

// flushBulk stages every dirty entry and the checkpoint.
func (e *Engine) flushBulk(txn writer, seq uint64) error {
	for _, re := range e.recs {
		if re.dirty {
			if err := e.stageRec(txn, &e.arena, re); err != nil {
				return err
			}
			re.dirty = false
		}
	}
	if err := e.cold.flushDirty(e.spillRec(txn)); err != nil {
		return err
	}
	for _, ce := range e.counts {
		if ce.dirty {
			if err := e.stageCount(txn, ce); err != nil {
				return err
			}
			e.countWritten(ce)
		}
	}
	if err := e.stageCatalogue(txn); err != nil {
		return err
	}
	for _, c := range e.dirtyCamps {
		c.dirty = false
	}
	e.dirtyCamps = e.dirtyCamps[:0]
	e.dirtyGroups = e.dirtyGroups[:0]
	for _, k := range e.journal {
		if err := txn.Set([]byte(k), nil); err != nil {
			return fmt.Errorf("stage lift: %w", err)
		}
	}
	e.journal = e.journal[:0]
	if err := e.stageMarks(txn); err != nil {
		return err
	}
	e.cleanMarks()
	return txn.Set([]byte{keyCheckpoint}, binary.BigEndian.AppendUint64(nil, seq))
}

// evictBulk trims the caches like evictClean, writing the dirty entries
// that leave.
func (e *Engine) evictBulk(txn writer) error {
	if err := e.evictRecs(e.spillRec(txn)); err != nil {
		return err
	}
	return e.evictCounts(func(ce *countEntry) error {
		if !ce.dirty {
			return nil
		}
		if err := e.stageCount(txn, ce); err != nil {
			return err
		}
		e.countWritten(ce)
		return nil
	})
}

// evictClean trims the caches after a commit, when every entry is clean.
// The second tier then holds only clean records and has nothing to spill:
// an error says that a dirty one reached it, which would lose it, so the
// engine stops rather than go on.
func (e *Engine) evictClean() error {
	return errors.Join(e.evictRecs(nil), e.evictCounts(nil))
}

// countingWriter counts the keys staged through it.
type countingWriter struct {
	w writer
	n int
}

func (c *countingWriter) Set(k, v []byte) error { c.n++; return c.w.Set(k, v) }

func (c *countingWriter) Delete(k []byte) error { c.n++; return c.w.Delete(k) }

func (c *countingWriter) commit() error { return c.w.commit() }

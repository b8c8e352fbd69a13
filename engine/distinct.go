package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/dgraph-io/badger/v4"
	"github.com/zeebo/xxh3"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

// Distinct recipients per window. Each (campaign, event type, minute) has
// a HyperLogLog++ sketch (precision 14: about 0.8% standard error, exact
// in practice below a few hundred recipients thanks to the sparse
// representation) of the recipients of its events; a window of 5m, 1h or
// 1d merges its minutes' sketches, which is what makes sketches the right
// tool: distinct counts do not add up, sketches merge.
//
// Sketches are not part of the exactly-once transaction on every commit:
// inserting a recipient twice leaves a sketch unchanged, so replaying
// events into them is harmless. They are written at most every
// sketchFlushEvery (a dense sketch is 16 KiB; writing every hot one at
// every commit would dominate the state store's writes), together
// with keySketchSeq, the sequence up to which they are complete. On start,
// the events between keySketchSeq and the checkpoint are re-inserted
// before anything else. Distinct counts therefore trail the funnel by at
// most sketchFlushEvery.

const (
	prefixSketch = 'h'
	keySketchSeq = 'H'

	sketchFlushEvery = time.Second
	// sketchCache is the most clean sketches kept in memory after a flush.
	sketchCache = 20_000
)

type sketchKey struct {
	cid    uint32
	m      metric
	minute int64
}

func (k sketchKey) bytes(dst []byte) []byte {
	dst = append(dst, prefixSketch)
	dst = binary.BigEndian.AppendUint32(dst, k.cid)
	dst = append(dst, byte(k.m))
	return binary.BigEndian.AppendUint64(dst, sortable(k.minute))
}

type sketchEntry struct {
	hll   *hyperloglog.Sketch
	dirty bool
}

// sketchAdd inserts recipient r (normalised) into the sketch of (cid, m)
// at the minute of t.
func (e *Engine) sketchAdd(cid uint32, m metric, t int64, r string) error {
	k := sketchKey{cid, m, floorDiv(t, microsPerMinute)}
	se := e.sketches[k]
	if se == nil {
		se = &sketchEntry{}
		e.kbuf = k.bytes(e.kbuf[:0])
		if e.mayExistBytes(e.kbuf) {
			item, err := e.reader().Get(e.kbuf)
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return fmt.Errorf("read sketch: %w", err)
			default:
				se.hll = &hyperloglog.Sketch{}
				if err := item.Value(se.hll.UnmarshalBinary); err != nil {
					return fmt.Errorf("sketch %x: %w", e.kbuf, err)
				}
			}
		}
		if se.hll == nil {
			se.hll = hyperloglog.New14()
		}
		e.sketches[k] = se
	}
	se.hll.InsertHash(xxh3.HashString(r))
	if !se.dirty {
		se.dirty = true
		e.dirtySketches = append(e.dirtySketches, k)
	}
	return nil
}

// sketchesDue reports whether this commit should write the sketches. Bulk
// commits are rare and large: they always do.
func (e *Engine) sketchesDue() bool {
	return len(e.dirtySketches) > 0 && e.cfg.Bulk ||
		len(e.dirtySketches) > 0 && (time.Since(e.sketchFlushed) >= sketchFlushEvery || len(e.sketches) > 2*sketchCache)
}

// stageSketches writes every dirty sketch and the sequence they are
// complete to.
func (e *Engine) stageSketches(txn writer, seq uint64) error {
	for _, k := range e.dirtySketches {
		v, err := e.sketches[k].hll.MarshalBinary()
		if err != nil {
			return err
		}
		if err := txn.Set(k.bytes(nil), v); err != nil {
			return fmt.Errorf("stage sketch: %w", err)
		}
	}
	return txn.Set([]byte{keySketchSeq}, binary.BigEndian.AppendUint64(nil, seq))
}

// sketchesWritten marks the staged sketches clean and trims the cache.
func (e *Engine) sketchesWritten(seq uint64) {
	for _, k := range e.dirtySketches {
		e.sketches[k].dirty = false
	}
	e.dirtySketches = e.dirtySketches[:0]
	e.sketchSeq = seq
	e.sketchFlushed = time.Now()
	if len(e.sketches) > sketchCache {
		clear(e.sketches)
	}
}

// recoverSketches re-inserts the events the stored sketches may miss
// (those after keySketchSeq up to the checkpoint) and writes them.
func (e *Engine) recoverSketches() error {
	applied := e.applied.Load()
	if e.sketchSeq >= applied {
		return nil
	}
	e.log.Info("engine: restoring distinct-recipient sketches", "from", e.sketchSeq+1, "to", applied)
	e.rtxn = e.db.NewTransaction(false)
	err := e.src.ReadFrom(context.Background(), e.sketchSeq+1, func(ev *event.Event) error {
		if ev.Seq > applied {
			return storage.ErrStop
		}
		r := event.NormalizeRecipient(ev.Recipient)
		if r == "" {
			return nil
		}
		c := e.camps[campKeyT{ev.Source, ev.Account, ev.Campaign}]
		if c == nil {
			return fmt.Errorf("engine: sketch recovery: campaign of seq %d missing from the catalogue", ev.Seq)
		}
		return e.sketchAdd(c.ID, eventMetric(ev.Type), ev.EventTime.UnixMicro(), r)
	})
	e.rtxn.Discard()
	e.rtxn = nil
	if err != nil && !errors.Is(err, storage.ErrStop) {
		return err
	}
	txn := e.db.NewTransaction(true)
	defer txn.Discard()
	if err := e.stageSketches(atomicTxn{txn}, applied); err != nil {
		return err
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("write restored sketches: %w", err)
	}
	e.sketchesWritten(applied)
	return nil
}

// distinctInto sets each window's distinct recipients per event type from
// the minute sketches of campaign cid in [from, to), widened to whole
// minutes.
// Windows without events in the range get none.
func (e *Engine) distinctInto(txn *badger.Txn, cid uint32, w, from, to int64, points map[int64]*Point) error {
	lo, hi := floorDiv(from, microsPerMinute), ceilDiv(to, microsPerMinute)
	for _, typ := range event.Types() {
		m := eventMetric(typ)
		windows := map[int64]*hyperloglog.Sketch{}
		prefix := sketchKey{cid: cid, m: m}.bytes(nil)[:6]
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		for it.Seek(sketchKey{cid, m, lo}.bytes(nil)); it.Valid(); it.Next() {
			minute := unsortable(binary.BigEndian.Uint64(it.Item().Key()[6:]))
			if minute >= hi {
				break
			}
			sk := &hyperloglog.Sketch{}
			if err := it.Item().Value(sk.UnmarshalBinary); err != nil {
				it.Close()
				return fmt.Errorf("sketch: %w", err)
			}
			start := floorDiv(minute*microsPerMinute, w) * w
			if acc := windows[start]; acc == nil {
				windows[start] = sk
			} else if err := acc.Merge(sk); err != nil {
				it.Close()
				return err
			}
		}
		it.Close()
		for start, sk := range windows {
			p := points[start]
			if p == nil {
				continue
			}
			if p.Recipients == nil {
				p.Recipients = map[string]int64{}
			}
			p.Recipients[typ.String()] = int64(sk.Estimate())
		}
	}
	return nil
}

// flushSketches writes the dirty sketches on close, so that a clean
// restart has nothing to restore. Sketches may hold events past the
// checkpoint (applied, not yet committed); they are applied again after
// the restart, and inserting them again changes nothing.
func (e *Engine) flushSketches() error {
	if len(e.dirtySketches) == 0 {
		return nil
	}
	seq := e.applied.Load()
	txn := e.db.NewTransaction(true)
	defer txn.Discard()
	if err := e.stageSketches(atomicTxn{txn}, seq); err != nil {
		return err
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("write sketches: %w", err)
	}
	e.sketchesWritten(seq)
	return nil
}

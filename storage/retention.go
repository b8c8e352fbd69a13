package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/event"
)

// Retention. The log is the system's source of truth, so by default it
// keeps everything. An operator may bound it: Trim deletes whole entries
// whose events are all consumed (at or below a sequence the caller
// computes from every reader's checkpoint) and older than a cut-off. The
// aggregates derived from trimmed events stay in the engine's state; only
// a rebuild or replay, which re-reads the log, can no longer see them.
//
// keyTrimmed records the last trimmed sequence, so that FirstSeq survives
// restarts and sequence numbers are never reused, even when every entry
// has been trimmed.

const keyTrimmed = 't'

// FirstSeq is the oldest sequence still in the log: 1 until Trim removes
// something.
func (l *Log) FirstSeq() uint64 { return l.trimmed.Load() + 1 }

// loadTrimmed reads keyTrimmed within txn.
func loadTrimmed(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get([]byte{keyTrimmed})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var seq uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("trim mark: %w", errCorruptEntry)
		}
		seq = binary.BigEndian.Uint64(v)
		return nil
	})
	return seq, err
}

// Trim deletes the oldest log entries whose events all have sequences at
// or below upTo and were received before olderThan. It stops at the first
// entry that must stay, so the log remains a gapless range
// [FirstSeq, LastSeq]. It returns how many events it removed. The space is
// reclaimed by compaction and value-log GC.
func (l *Log) Trim(ctx context.Context, upTo uint64, olderThan time.Time) (uint64, error) {
	if l.closed.Load() {
		return 0, ErrClosed
	}
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	var doomed [][]byte
	var lasts []uint64 // of doomed's entries
	through := l.trimmed.Load()
	// A corrupt dedupe run is written again from the log's events in its
	// range: they stay until it is.
	keep := l.index.badFirst()
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 16, Prefix: []byte{prefixLog}})
		defer it.Close()
		var e event.Event
		for it.Rewind(); it.Valid() && len(doomed) < trimBatch; it.Next() {
			if err := ctx.Err(); err != nil {
				return ctxErr(ctx)
			}
			item := it.Item()
			first := binary.BigEndian.Uint64(item.Key()[1:])
			var last uint64
			var recv time.Time
			if err := item.Value(func(v []byte) error {
				var err error
				last, err = lastEvent(first, v, &e)
				recv = e.ReceivedTime
				return err
			}); err != nil {
				return err
			}
			if last > upTo || last >= keep || !recv.Before(olderThan) {
				break
			}
			doomed = append(doomed, item.KeyCopy(nil))
			lasts = append(lasts, last)
			through = last
		}
		return nil
	})
	if err != nil || len(doomed) == 0 {
		return 0, err
	}
	// The dedupe index's tail lives in memory and is rebuilt from the log
	// after a crash: an event leaves the log only once its hash is in a
	// run.
	if through > l.index.covered.Load() {
		if err := l.persistIndex(ctx); err != nil {
			return 0, err
		}
		if through > l.index.covered.Load() {
			return 0, nil // not expected: the run covers every event stored
		}
	}
	// A run found corrupt meanwhile (writing the tail can take a while).
	if keep := l.index.badFirst(); through >= keep {
		i := sort.Search(len(lasts), func(i int) bool { return lasts[i] >= keep })
		if doomed = doomed[:i]; i == 0 {
			return 0, nil
		}
		through = lasts[i-1]
	}
	before := l.trimmed.Load()
	err = l.db.Update(func(txn *badger.Txn) error {
		for _, k := range doomed {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return txn.Set([]byte{keyTrimmed}, binary.BigEndian.AppendUint64(nil, through))
	})
	if err != nil {
		return 0, fmt.Errorf("trim log: %w", err)
	}
	l.trimmed.Store(through)
	return through - before, nil
}

// trimBatch bounds the entries one Trim deletes (one transaction); the
// retention loop calls Trim again for the rest.
const trimBatch = 5_000

// lastEvent decodes the last event of an entry into e and returns its
// sequence.
func lastEvent(first uint64, v []byte, e *event.Event) (uint64, error) {
	var seq uint64
	err := walkEntry(first, v, func(s uint64, last bool, raw []byte) error {
		if !last {
			return nil
		}
		seq = s
		if _, err := event.Decode(raw, e); err != nil {
			return fmt.Errorf("log entry at seq %d: %w", s, err)
		}
		return nil
	})
	if err == nil && seq == 0 {
		err = fmt.Errorf("empty log entry at seq %d: %w", first, errCorruptEntry)
	}
	return seq, err
}

// persistIndex has the committer write the dedupe index's tail as a run,
// and waits for it.
func (l *Log) persistIndex(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case l.persist <- done:
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-l.stop:
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

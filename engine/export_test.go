package engine

import (
	"context"
	"encoding/binary"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

// Crash closes the state store the way a kill would leave it: without
// writing the sketches that wait for their next flush.
func Crash(e *Engine) error {
	e.closeOnce.Do(func() {
		e.closed = true
		if e.rtxn != nil {
			e.rtxn.Discard()
		}
		e.closeErr = e.db.Close()
	})
	return e.closeErr
}

// SetStagedSizeHook sets stagedSizeHook and the transaction byte budget
// for one test; the returned function restores both.
func SetStagedSizeHook(budget int, hook func(staged, estimate int)) (restore func()) {
	oldBudget, oldHook := maxDirtyBytes, stagedSizeHook
	maxDirtyBytes, stagedSizeHook = budget, hook
	return func() { maxDirtyBytes, stagedSizeHook = oldBudget, oldHook }
}

// DowngradeToV1 rewrites the state store in dir (closed) in format
// version 1: bounce groups and suppression states move out of the 'r'
// records into 'b' and 's' records, and the format key goes. With
// crashed, the 'r' records keep them too: the state a migration leaves
// when it is killed after writing a target and before deleting its source.
// It returns how many 'b' and 's' records it wrote.
func DowngradeToV1(dir string, crashed bool) (groups, sups int, err error) {
	db, err := storage.OpenBadgerOptions(dir, stateBadgerOptions, nil)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{prefixRecip}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			re := &recEntry{key: string(k)}
			if err := it.Item().Value(func(v []byte) error { return re.decodeRecord(re.key, v) }); err != nil {
				return err
			}
			if len(re.groups) > 0 {
				groups++
				if err := wb.Set(append([]byte{v1GroupRecip}, k[1:]...), encodeGroups(nil, re.groups)); err != nil {
					return err
				}
			}
			if re.sup != nil {
				sups++
				if err := wb.Set(append([]byte{v1SupState}, k[5:]...), re.sup.encode(nil)); err != nil {
					return err
				}
			}
			if !crashed {
				if err := wb.Set(k, re.st.encode(nil)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if err := wb.Delete([]byte{keyFormat}); err != nil {
		return 0, 0, err
	}
	return groups, sups, wb.Flush()
}

// Fresh reports whether the engine knows its store held no state when it
// opened (see Engine.fresh).
func Fresh(e *Engine) bool { return e.fresh }

// SetFormatVersion writes version as the format of the state store in dir
// (closed).
func SetFormatVersion(dir string, version uint64) error {
	db, err := storage.OpenBadgerOptions(dir, stateBadgerOptions, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte{keyFormat}, binary.AppendUvarint(nil, version))
	})
}

// FormatVersion reads the format version e's store is stamped with.
func FormatVersion(e *Engine) (uint64, error) {
	var v uint64
	err := e.view(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{keyFormat})
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			v, _ = binary.Uvarint(b)
			return nil
		})
	})
	return v, err
}

// OpenParts counts the minute counters' open parts ('o') in e's store.
func OpenParts(e *Engine) int {
	n := 0
	_ = e.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixCount}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); len(k) > 9 && k[len(k)-9] == levelOpen {
				n++
			}
		}
		return nil
	})
	return n
}

// ApplyUncommitted applies the log's events after what e applied and has
// pending, without committing.
func ApplyUncommitted(e *Engine) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	last := e.src.LastSeq()
	from := e.applied.Load() + uint64(e.pending) + 1
	if from > last {
		return nil
	}
	return e.src.ReadFrom(context.Background(), from, func(ev *event.Event) error {
		if err := e.apply(ev); err != nil {
			return err
		}
		if ev.Seq >= last {
			return storage.ErrStop
		}
		return nil
	})
}

// FailedCommit does to e what a commit whose Badger transaction fails (Set
// or Commit returns an error) does: it stages every dirty entry into a
// transaction that is then discarded.
func FailedCommit(e *Engine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.arena = stageArena{}
	t := e.db.NewTransaction(true)
	defer t.Discard()
	for _, re := range e.dirtyRecs {
		_ = e.stageRec(atomicTxn{t}, &e.arena, re)
	}
	for _, ce := range e.dirtyCnts {
		_ = e.stageCount(atomicTxn{t}, ce)
	}
}

// Commit runs e's commit, as CatchUp does again after a failed one.
func Commit(e *Engine) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.commit()
}

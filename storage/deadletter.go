package storage

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DeadLetter is a webhook body that ingest rejected, kept verbatim so that
// nothing a provider sent is lost: an operator can inspect it, fix the
// adapter, and replay it.
type DeadLetter struct {
	ID       uint64    `json:"id"`
	Received time.Time `json:"received"`
	Provider string    `json:"provider"`
	Source   string    `json:"source"`
	Error    string    `json:"error"`
	Body     string    `json:"body"`
}

// PutDeadLetter stores d durably and returns its id (assigned here).
func (l *Log) PutDeadLetter(d DeadLetter) (uint64, error) {
	if l.closed.Load() {
		return 0, ErrClosed
	}
	l.deadMu.Lock()
	defer l.deadMu.Unlock()
	d.ID = l.nextDeadID
	v, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("encode dead letter: %w", err)
	}
	if err := l.db.Update(func(txn *badger.Txn) error {
		return txn.Set(seqKey(prefixDeadLetter, d.ID), v)
	}); err != nil {
		return 0, fmt.Errorf("store dead letter: %w", err)
	}
	if err := l.db.Sync(); err != nil {
		return 0, fmt.Errorf("sync dead letter: %w", err)
	}
	l.nextDeadID++
	return d.ID, nil
}

// DeadLetters returns up to limit dead letters with id > after, oldest first.
func (l *Log) DeadLetters(after uint64, limit int) ([]DeadLetter, error) {
	if l.closed.Load() {
		return nil, ErrClosed
	}
	var out []DeadLetter
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{prefixDeadLetter}})
		defer it.Close()
		for it.Seek(seqKey(prefixDeadLetter, after+1)); it.ValidForPrefix([]byte{prefixDeadLetter}) && len(out) < limit; it.Next() {
			var d DeadLetter
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &d) }); err != nil {
				return fmt.Errorf("decode dead letter %d: %w", binary.BigEndian.Uint64(it.Item().Key()[1:]), err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Checkpoint returns the stored position of the named consumer (0 if none).
// Consumers that keep their state outside this log (the exporter, whose
// state is the files it wrote) record their progress here.
func (l *Log) Checkpoint(name string) (uint64, error) {
	var seq uint64
	err := l.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append([]byte{prefixCheckpoint}, name...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("checkpoint %q: %w", name, errCorruptEntry)
			}
			seq = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	return seq, err
}

// SetCheckpoint durably records the named consumer's position.
func (l *Log) SetCheckpoint(name string, seq uint64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], seq)
	if err := l.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append([]byte{prefixCheckpoint}, name...), v[:])
	}); err != nil {
		return fmt.Errorf("set checkpoint %q: %w", name, err)
	}
	return l.db.Sync()
}

package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
)

// The state store's format version, in key 'V'. A store without it was
// written before version 2 and is migrated in place when opened.
//
// Version 2 keeps everything the engine knows about a recipient in a
// campaign in one record, and everything about a recipient across all
// campaigns in one more:
//
//	'r' uint32 BE cid, recipient -> funnel state, then first bounce per bounce group
//	'r' 0, recipient             -> the same over all campaigns, then the suppression state
//
// Version 3 adds the open part of a minute counter ('n' ... 'o' minute; see
// countEntry): a minute's count is its 'm' value plus its 'o' value. A
// version 2 store has no open parts, so it reads the same as version 3
// and is only stamped; the version stops an older build, which would
// ignore the open parts, from opening a newer store.
//
// Version 1 had the bounce groups ('b') and the suppression state ('s') in
// keys of their own. Every key the engine writes costs a random insert
// into Badger's memtable skiplist, which was about half of the engine's
// CPU, and a bounce wrote five recipient keys; now it writes two (plus, as
// before, the API's suppression record when it suppresses the address).
// An event's records change together anyway: a bounce reaches the
// funnel's sent and bounced metrics in the same records that hold its
// groups.
const (
	keyFormat     = 'V'
	formatVersion = 3
)

// encodeRecord appends re's record for key k (prefix 'r'): the funnel
// state; then, if there is more, the bounce groups; then, on an
// all-campaigns record, the suppression state if there is one. A recipient
// that never bounced nor was suppressed keeps the funnel state alone.
func (re *recEntry) encodeRecord(k string, dst []byte) []byte {
	dst = re.st.encode(dst)
	sup := re.sup != nil && isAllCampaigns(k)
	if len(re.groups) == 0 && !sup {
		return dst
	}
	dst = encodeGroups(dst, re.groups)
	if sup {
		dst = re.sup.encode(dst)
	}
	return dst
}

// decodeRecord is encodeRecord's inverse.
func (re *recEntry) decodeRecord(k string, v []byte) error {
	n, err := re.st.decodePrefix(v)
	if err != nil {
		return err
	}
	re.groups, re.sup = nil, nil
	if n == len(v) {
		return nil
	}
	gs, m, err := decodeGroupsPrefix(v[n:])
	if err != nil {
		return err
	}
	if len(gs) > 0 {
		re.groups = gs
	}
	if n += m; n == len(v) {
		return nil
	}
	if !isAllCampaigns(k) {
		return fmt.Errorf("recipient record: %w", errCorrupt)
	}
	re.sup = &supState{}
	return re.sup.decode(v[n:])
}

// isAllCampaigns reports whether record key k (prefix 'r') is a
// recipient's all-campaigns record.
func isAllCampaigns(k string) bool {
	return len(k) >= 5 && k[1:5] == "\x00\x00\x00\x00" // cid allCampaigns, big-endian
}

// Keys of format version 1, read only by the migration.
const (
	v1GroupRecip = 'b' // uint32 BE cid, recipient -> bounce groups
	v1SupState   = 's' // recipient -> suppression state
)

// prepareFormat makes db's format current: it stamps an empty store, and
// migrates a version 1 store in place. A newer version is refused rather
// than misread.
func prepareFormat(db *badger.DB, log *slog.Logger) (migrated int, err error) {
	var version uint64
	empty := false
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		it.Rewind()
		empty = !it.Valid()
		it.Close()
		item, err := txn.Get([]byte{keyFormat})
		if errors.Is(err, badger.ErrKeyNotFound) {
			version = 1
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			var k int
			if version, k = binary.Uvarint(v); k <= 0 {
				return fmt.Errorf("format version: %w", errCorrupt)
			}
			return nil
		})
	})
	switch {
	case err != nil:
		return 0, fmt.Errorf("read state format: %w", err)
	case version == formatVersion:
		return 0, nil
	case version > formatVersion:
		return 0, fmt.Errorf("engine state has format version %d, this build reads up to %d: run a newer mailfunnel, or re-derive the state from the log with 'mailfunnel rebuild'", version, formatVersion)
	}
	if !empty && version == 1 {
		// Minutes for tens of millions of recipients: say why the start
		// is slow.
		log.Info("engine: migrating the state to the current format", "from", version, "to", formatVersion)
		if migrated, err = migrateV1(db); err != nil {
			return migrated, fmt.Errorf("migrate engine state to format %d: %w", formatVersion, err)
		}
	}
	err = db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte{keyFormat}, binary.AppendUvarint(nil, formatVersion))
	})
	return migrated, err
}

// migrateV1 folds version 1's 'b' and 's' records into the 'r' records and
// deletes them. The version key is written only after it, so a crash
// midway runs it again on the next open. That is safe because a record is
// deleted only after its target is written, and folding the same record
// twice changes nothing (a group keeps its earliest time, a suppression
// state is replaced by itself).
func migrateV1(db *badger.DB) (int, error) {
	var n int
	for _, p := range []byte{v1GroupRecip, v1SupState} {
		m, err := foldV1(db, p)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// foldV1 folds every record of version 1 prefix p into its 'r' record.
// Each 'r' record takes at most one record of p, so reading the targets
// from a snapshot taken before the pass is exact.
func foldV1(db *badger.DB, p byte) (int, error) {
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	txn := db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{p}})
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		var target []byte
		if p == v1GroupRecip {
			if len(k) < 5 {
				return n, fmt.Errorf("bounce groups key %x: %w", k, errCorrupt)
			}
			target = append([]byte{prefixRecip}, k[1:]...)
		} else {
			target = appendRecKey(nil, allCampaigns, string(k[1:]))
		}
		re := &recEntry{key: string(target)}
		item, err := txn.Get(target)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return n, err
		default:
			if err := item.Value(func(v []byte) error { return re.decodeRecord(re.key, v) }); err != nil {
				return n, err
			}
		}
		if err := it.Item().Value(func(v []byte) error {
			if p == v1SupState {
				re.sup = &supState{}
				return re.sup.decode(v)
			}
			gs, err := decodeGroups(v)
			for _, g := range gs {
				re.addGroup(g)
			}
			return err
		}); err != nil {
			return n, err
		}
		if err := wb.Set(target, re.encodeRecord(re.key, nil)); err != nil {
			return n, err
		}
		if err := wb.Delete(k); err != nil {
			return n, err
		}
		n++
	}
	return n, wb.Flush()
}

// addGroup merges g into re's groups, keeping the earlier time.
func (re *recEntry) addGroup(g groupFirst) {
	for i := range re.groups {
		if re.groups[i].dim == g.dim && re.groups[i].key == g.key {
			re.groups[i].first = min(re.groups[i].first, g.first)
			return
		}
	}
	re.groups = append(re.groups, g)
}

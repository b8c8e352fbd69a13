package engine

import (
	"encoding/binary"
	"errors"

	"github.com/zeebo/xxh3"
)

// The recipient cache has two tiers. The first, Engine.recs, holds decoded
// records (*recEntry) that apply can change in place: the records of the
// current batch and the ones used just before it, at most hotRecs. A record
// it lets go moves to the second tier, coldRecs, as the bytes the state
// store would hold (encodeRecord), and comes back decoded when an event
// needs it again.
//
// Why two: a decoded record costs several hundred bytes of Go heap
// (the struct, its key, its map entry, and the garbage collector's
// headroom, all scanned at every collection); an encoded one about 60-100,
// in segments and an index the collector does not scan. A cache of the
// same memory then holds several times more recipients, and under a
// stream that touches more recipients than the cache holds (a rebuild at
// scale, or a load generator's random recipients) every miss it saves is a
// Badger point read through the LSM tree, tens of µs against well under
// one to decode.
//
// The second tier is log-structured: records are appended to the newest
// segment and the oldest segment is dropped when the tier passes its byte
// budget (first in, first out; a record that is used again moves back to
// the first tier, and leaves at the end of the line when it comes back, so
// used records stay). A key is in at most one tier: taking a record out of
// the second tier removes it from the index, and the bytes left behind are
// skipped when their segment is dropped.
//
// In the normal mode only clean records move down (evictClean runs after a
// commit). In bulk mode a record is written only when it leaves memory
// (see bulk.go), so dirty records move down too, flagged, and the tier
// hands them to a spill function when their segment is dropped.
type coldRecs struct {
	budget  int      // bytes of segments kept
	segSize int      // capacity of a new segment
	segs    [][]byte // segs[i] is segment number first+i
	first   uint32
	bytes   int               // capacity of the segments held
	index   map[uint64]uint64 // xxh3 of the key -> segment number<<32 | offset
}

// Flags of a second-tier record.
const (
	coldDirty = 1 << iota // not in the store yet (bulk mode)
	coldPub               // its API suppression record is due (bulk mode, see publish)
)

// coldRecordBytes is the second tier's budget per record of
// Config.RecipientCache: a funnel record with a few metrics reached is
// 40-60 bytes with its key and header, one with bounce groups or
// suppression causes more.
const coldRecordBytes = 96

// hotRecs bounds the first tier. It holds a batch's records (a normal-mode
// transaction writes at most maxDirty keys), so it need not grow with
// RecipientCache.
const hotRecs = 1 << 17

// spillFunc receives a dirty record that leaves the second tier.
type spillFunc func(k, v []byte, flags byte) error

var errDirtySpill = errors.New("engine: a dirty recipient record left the cache without a writer")

func newColdRecs(records int) *coldRecs {
	budget := records * coldRecordBytes
	return &coldRecs{
		budget:  budget,
		segSize: min(max(budget/8, 256), 4<<20),
		index:   make(map[uint64]uint64),
	}
}

// entry decodes the record at loc: its key, value and flags, and its
// length in the segment.
func (c *coldRecs) entry(loc uint64) (k, v []byte, flags byte, n int) {
	b := c.segs[uint32(loc>>32)-c.first][uint32(loc):]
	kl, n1 := binary.Uvarint(b[1:])
	vl, n2 := binary.Uvarint(b[1+n1:])
	p := 1 + n1 + n2
	return b[p : p+int(kl)], b[p+int(kl) : p+int(kl)+int(vl)], b[0], p + int(kl) + int(vl)
}

// take returns the record of key k and removes it from the tier. v is
// valid until the next put.
func (c *coldRecs) take(k []byte) (v []byte, flags byte, ok bool) {
	h := xxh3.Hash(k)
	loc, ok := c.index[h]
	if !ok {
		return nil, 0, false
	}
	key, v, flags, _ := c.entry(loc)
	if string(key) != string(k) {
		return nil, 0, false // another key with the same hash
	}
	delete(c.index, h)
	return v, flags, true
}

// put adds record k with value v. Dirty records it pushes out go to spill
// (nil in the normal mode, where none is dirty).
func (c *coldRecs) put(k string, v []byte, flags byte, spill spillFunc) error {
	need := 1 + uvarintLen(len(k)) + uvarintLen(len(v)) + len(k) + len(v)
	last := len(c.segs) - 1
	if last < 0 || len(c.segs[last])+need > cap(c.segs[last]) {
		seg := make([]byte, 0, max(c.segSize, need))
		c.segs = append(c.segs, seg)
		c.bytes += cap(seg)
		last++
		for c.bytes > c.budget && len(c.segs) > 1 {
			if err := c.dropOldest(spill); err != nil {
				return err
			}
			last--
		}
	}
	h := xxh3.HashString(k)
	if loc, ok := c.index[h]; ok {
		// A record stays at most once: an older copy of k is already out
		// of the index (take), so this is another key with the same hash,
		// which leaves.
		if ok, ov, ofl, _ := c.entry(loc); string(ok) != k && ofl&coldDirty != 0 {
			if err := spillTo(spill, ok, ov, ofl); err != nil {
				return err
			}
		}
	}
	seg := c.segs[last]
	off := len(seg)
	seg = append(seg, flags)
	seg = binary.AppendUvarint(seg, uint64(len(k)))
	seg = binary.AppendUvarint(seg, uint64(len(v)))
	seg = append(seg, k...)
	seg = append(seg, v...)
	c.segs[last] = seg
	c.index[h] = uint64(c.first+uint32(last))<<32 | uint64(off)
	return nil
}

// dropOldest drops the oldest segment, spilling its dirty live records.
func (c *coldRecs) dropOldest(spill spillFunc) error {
	seg := c.segs[0]
	base := uint64(c.first) << 32
	for off := 0; off < len(seg); {
		loc := base | uint64(off)
		k, v, flags, n := c.entry(loc)
		if h := xxh3.Hash(k); c.live(h, loc) {
			delete(c.index, h)
			if flags&coldDirty != 0 {
				if err := spillTo(spill, k, v, flags); err != nil {
					return err
				}
			}
		}
		off += n
	}
	c.bytes -= cap(seg)
	c.segs[0] = nil
	c.segs = c.segs[1:]
	c.first++
	return nil
}

// live reports whether the record at loc, whose key hashes to h, is the
// one the index holds (not a copy taken out since, nor a record another
// key with the same hash replaced). Location 0 is a valid location: the
// index's zero value must not match it.
func (c *coldRecs) live(h, loc uint64) bool {
	l, ok := c.index[h]
	return ok && l == loc
}

func spillTo(spill spillFunc, k, v []byte, flags byte) error {
	if spill == nil {
		return errDirtySpill
	}
	return spill(k, v, flags)
}

// flushDirty hands every dirty record to spill and marks it clean.
func (c *coldRecs) flushDirty(spill spillFunc) error {
	for i, seg := range c.segs {
		base := uint64(c.first+uint32(i)) << 32
		for off := 0; off < len(seg); {
			loc := base | uint64(off)
			k, v, flags, n := c.entry(loc)
			if flags&coldDirty != 0 && c.live(xxh3.Hash(k), loc) {
				if err := spillTo(spill, k, v, flags); err != nil {
					return err
				}
				seg[off] = flags &^ (coldDirty | coldPub)
			}
			off += n
		}
	}
	return nil
}

// reset empties the tier; its dirty records must have been flushed.
func (c *coldRecs) reset() {
	c.segs, c.bytes = nil, 0
	clear(c.index)
}

// len is the number of records held.
func (c *coldRecs) len() int { return len(c.index) }

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

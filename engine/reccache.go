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
// segment. A key is in at most one tier: taking a record out of the second
// tier removes it from the index, and leaves its bytes behind as garbage.
// Records cycle between the tiers (every event of a recipient takes its
// record out, and the first tier's eviction puts it back), so segments
// fill with garbage faster than with records. When the segments pass
// 1.5 times the budget, the oldest is reclaimed: its live records move to
// the newest segment while the live bytes are within the budget, and leave
// the cache (oldest first) once they are not. Dropping live records with
// the garbage instead would push out records the budget has room for, and
// each would cost a Badger read when it comes back (in a rebuild at scale
// those reads were 8% of the CPU).
//
// In the normal mode only clean records move down (evictClean runs after a
// commit). In bulk mode a record is written only when it leaves memory
// (see bulk.go), so dirty records move down too, flagged, and the tier
// hands them to a spill function when their segment is dropped.
type coldRecs struct {
	budget    int      // bytes of segments kept
	segSize   int      // capacity of a new segment
	segs      [][]byte // segs[i] is segment number first+i
	first     uint32
	bytes     int               // capacity of the segments held
	liveBytes int               // bytes of the records the index holds
	index     map[uint64]uint64 // xxh3 of the key -> segment number<<32 | offset
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
	key, v, flags, n := c.entry(loc)
	if string(key) != string(k) {
		return nil, 0, false // another key with the same hash
	}
	delete(c.index, h)
	c.liveBytes -= n
	return v, flags, true
}

// put adds record k with value v. Dirty records it pushes out go to spill
// (nil in the normal mode, where none is dirty).
func (c *coldRecs) put(k string, v []byte, flags byte, spill spillFunc) error {
	h := xxh3.HashString(k)
	if loc, ok := c.index[h]; ok {
		// A record stays at most once: an older copy of k is already out
		// of the index (take), so this is another key with the same hash,
		// which leaves.
		other, ov, ofl, n := c.entry(loc)
		if string(other) != k && ofl&coldDirty != 0 {
			if err := spillTo(spill, other, ov, ofl); err != nil {
				return err
			}
		}
		delete(c.index, h)
		c.liveBytes -= n
	}
	appendRec(c, h, k, v, flags)
	// Reclaiming copies at most the live bytes (within the budget), so a
	// pass over every segment brings the total under the bound; the guard
	// only makes that certain.
	for guard := len(c.segs) + 2; c.bytes > c.bound() && len(c.segs) > 1; guard-- {
		if err := c.reclaimOldest(spill, guard <= 0); err != nil {
			return err
		}
	}
	return nil
}

// bound is how many bytes of segments the tier may hold, garbage
// included, before it reclaims.
func (c *coldRecs) bound() int { return max(c.budget+c.budget/2, c.budget+2*c.segSize) }

// appendRec writes a record into the newest segment, opening one if it is
// full, and indexes it.
func appendRec[K string | []byte](c *coldRecs, h uint64, k K, v []byte, flags byte) {
	need := 1 + uvarintLen(len(k)) + uvarintLen(len(v)) + len(k) + len(v)
	last := len(c.segs) - 1
	if last < 0 || len(c.segs[last])+need > cap(c.segs[last]) {
		c.segs = append(c.segs, make([]byte, 0, max(c.segSize, need)))
		last++
		c.bytes += cap(c.segs[last])
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
	c.liveBytes += need
}

// reclaimOldest frees the oldest segment: each live record in it moves to
// the newest segment while the live bytes are within the budget (and evict
// is false), and otherwise leaves the cache, spilled if dirty.
func (c *coldRecs) reclaimOldest(spill spillFunc, evict bool) error {
	seg := c.segs[0]
	base := uint64(c.first) << 32
	for off := 0; off < len(seg); {
		loc := base | uint64(off)
		k, v, flags, n := c.entry(loc)
		if h := xxh3.Hash(k); c.live(h, loc) {
			if !evict && c.liveBytes <= c.budget {
				appendRec(c, h, k, v, flags) // the old bytes stay valid until the segment goes
				c.liveBytes -= n             // counted again by append
			} else {
				// Written before it leaves: if the write fails, the
				// record is still here.
				if flags&coldDirty != 0 {
					if err := spillTo(spill, k, v, flags); err != nil {
						return err
					}
				}
				delete(c.index, h)
				c.liveBytes -= n
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
	c.segs, c.bytes, c.liveBytes = nil, 0, 0
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

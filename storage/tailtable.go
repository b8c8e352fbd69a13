package storage

import (
	"encoding/binary"
	"math"
)

// tailTable is the dedupe index's tail: a set of (hash, expiry) with
// linear probing, each hash's home slot taken from its top bits, and no
// wraparound (the probe runs into spare slots past the end). So the slots
// are in hash order but for the short runs of a collision: a freeze
// lists the tail sorted with one pass and a few local swaps, where
// sorting a million entries took 9% of the CPU under batches. The hashes
// are uniform (xxh3), so their top bits make a good hash already, and a
// lookup or insert costs about one cache miss. An empty slot has expiry 0,
// which no stored hash has (it is a time after the epoch).
type tailTable struct {
	slots []runEnt
	shift uint // 64 - log2(home slots)
	n     int  // entries held, expired ones included
}

// tailSpare is the slots past the last home slot a probe may run into
// before the table grows.
const tailSpare = 64

func newTailTable() *tailTable { return newTailTableBits(10) }

// newTailTableFor returns a table that holds n entries without growing.
// A table is allocated whole, but pages nothing writes to cost no memory.
func newTailTableFor(n int) *tailTable {
	bits := uint(10)
	for 3<<bits < 4*n {
		bits++
	}
	return newTailTableBits(bits)
}

func newTailTableBits(bits uint) *tailTable {
	return &tailTable{slots: make([]runEnt, 1<<bits+tailSpare), shift: 64 - bits}
}

func hiOf(h *Hash) uint64 { return binary.BigEndian.Uint64(h[:8]) }

func (t *tailTable) home(h *Hash) int { return int(hiOf(h) >> t.shift) }

func (t *tailTable) len() int { return t.n }

// get returns h's expiry.
func (t *tailTable) get(h Hash) (uint32, bool) {
	for i := t.home(&h); i < len(t.slots) && t.slots[i].exp != 0; i++ {
		if t.slots[i].h == h {
			return t.slots[i].exp, true
		}
	}
	return 0, false
}

// put sets h's expiry (exp > 0).
func (t *tailTable) put(h Hash, exp uint32) { t.insert(h, exp, math.MaxUint32) }

// insert sets h's expiry to exp (> 0) unless the table holds h with an
// expiry after now, and reports whether it did: one probe for the
// committer's "a duplicate, or new and now in the tail".
func (t *tailTable) insert(h Hash, exp, now uint32) (live bool) {
	// At most three quarters full: probe runs stay a few slots long. A
	// growth rehashes every entry on the committer (a pause of a tenth of
	// a second at a million), so the index sizes its tables to hold what
	// it freezes at (newTailTableFor).
	if 4*(t.n+1) > 3<<(64-t.shift) {
		t.grow()
	}
	for {
		i := t.home(&h)
		for ; i < len(t.slots); i++ {
			s := &t.slots[i]
			if s.exp == 0 {
				*s = runEnt{h, exp}
				t.n++
				return false
			}
			if s.h == h {
				if s.exp > now {
					return true
				}
				s.exp = exp
				return false
			}
		}
		// Ran past the spare slots: more of them, not more home slots,
		// which would not spread hashes crowded at the top of the range
		// (doubling for them grew without bound).
		t.slots = append(t.slots, make([]runEnt, tailSpare)...)
	}
}

func (t *tailTable) grow() {
	old := t.slots
	*t = *newTailTableBits(64 - t.shift + 1)
	for _, e := range old {
		if e.exp != 0 {
			t.put(e.h, e.exp)
		}
	}
}

// remove takes h out, shifting back the entries of its probe run that
// may move closer to their home slot (so that get still finds them).
func (t *tailTable) remove(h Hash) {
	i := t.home(&h)
	for ; i < len(t.slots) && t.slots[i].exp != 0; i++ {
		if t.slots[i].h == h {
			break
		}
	}
	if i == len(t.slots) || t.slots[i].exp == 0 {
		return
	}
	t.n--
	for j := i + 1; j < len(t.slots) && t.slots[j].exp != 0; j++ {
		if t.home(&t.slots[j].h) <= i {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = runEnt{}
}

// each calls fn for every entry, in slot order.
func (t *tailTable) each(fn func(runEnt)) {
	for _, e := range t.slots {
		if e.exp != 0 {
			fn(e)
		}
	}
}

// sorted returns the entries in hash order. Slot order is hash order
// but within a probe run, where entries are in the order they came; an
// insertion sort puts those right.
func (t *tailTable) sorted() []runEnt {
	out := make([]runEnt, 0, t.n)
	t.each(func(e runEnt) { out = append(out, e) })
	less := func(a, b *runEnt) bool {
		ah, bh := hiOf(&a.h), hiOf(&b.h)
		return ah < bh || ah == bh && binary.BigEndian.Uint64(a.h[8:]) < binary.BigEndian.Uint64(b.h[8:])
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && less(&out[j], &out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

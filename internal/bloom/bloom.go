// Package bloom is a blocked Bloom filter over keys that are already
// uniformly distributed 128-bit hashes (xxh3 in mailfunnel). The engine
// uses one to skip state-store reads for keys a fresh store cannot hold,
// the log to skip dedupe-index reads for events it has never stored.
//
// Contract: a key that was added is always found (no false negatives);
// a key never added is reported present with a probability of about 1.5%
// while the filter holds no more keys than it was sized for, rising above
// that. A Filter is not safe for concurrent use when one of the callers
// adds; any number may Test at once.
//
// Why blocked: all of a key's bits lie in one 64-byte block, so a test
// costs one cache miss instead of one per bit. The filters here are far
// larger than the CPU caches and are probed once per event; the price is
// a slightly higher false-positive rate than a standard filter of the
// same size. (No blocked filter library is among the modules this build
// can fetch, and bits-and-blooms' filter probes a cache line per bit.)
package bloom

import "math/bits"

// BitsPerKey is the filter's size per key it is sized for: 10 bits, as a
// standard filter needs for 1% false positives.
const BitsPerKey = 10

// Filter is a blocked Bloom filter. The zero value is not usable; call New.
type Filter struct{ blocks [][8]uint64 }

// New returns a filter sized for keys keys (at least one 512-bit block).
func New(keys int) *Filter {
	return &Filter{blocks: make([][8]uint64, max(1, keys*BitsPerKey/512))}
}

// Bytes is the filter's memory.
func (f *Filter) Bytes() int { return len(f.blocks) * 64 }

// probe returns the key's block and the first bit and stride of its seven
// bits in the block: hi picks the block (by multiply-shift, no modulo),
// lo the bits by double hashing.
func (f *Filter) probe(hi, lo uint64) (b *[8]uint64, h1, h2 uint32) {
	blk, _ := bits.Mul64(hi, uint64(len(f.blocks)))
	return &f.blocks[blk], uint32(lo), uint32(lo>>32) | 1
}

// Test reports whether the key (hi, lo) may have been added.
func (f *Filter) Test(hi, lo uint64) bool {
	b, h1, h2 := f.probe(hi, lo)
	for i := uint32(0); i < 7; i++ {
		bit := (h1 + i*h2) & 511
		if b[bit>>6]&(1<<(bit&63)) == 0 {
			return false
		}
	}
	return true
}

// TestAndAdd adds the key (hi, lo) and reports whether it may have been
// added before.
func (f *Filter) TestAndAdd(hi, lo uint64) bool {
	b, h1, h2 := f.probe(hi, lo)
	present := true
	for i := uint32(0); i < 7; i++ {
		bit := (h1 + i*h2) & 511
		if m := uint64(1) << (bit & 63); b[bit>>6]&m == 0 {
			present = false
			b[bit>>6] |= m
		}
	}
	return present
}

// Union adds every key of o to f, as if each had been added to f. Both
// must have been made by New with the same size; Union reports whether
// they were (and changes nothing when not).
func (f *Filter) Union(o *Filter) bool {
	if len(f.blocks) != len(o.blocks) {
		return false
	}
	for i := range f.blocks {
		for j := range f.blocks[i] {
			f.blocks[i][j] |= o.blocks[i][j]
		}
	}
	return true
}

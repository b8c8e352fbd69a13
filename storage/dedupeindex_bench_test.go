package storage

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/zeebo/xxh3"
)

// BenchmarkDedupeRunFind looks up hashes in a run of 1M: half held, half
// not, from the page cache (a lookup happens only on a filter's "maybe").
func BenchmarkDedupeRunFind(b *testing.B) {
	const n = 1 << 20
	ents := make([]runEnt, n)
	var k [8]byte
	for i := range ents {
		binary.BigEndian.PutUint64(k[:], uint64(i))
		ents[i] = runEnt{Hash(xxh3.Hash128(k[:]).Bytes()), 1}
	}
	slices.SortFunc(ents, func(a, b runEnt) int { return bytes.Compare(a.h[:], b.h[:]) })
	w, err := createRun(b.TempDir(), 1, n)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if err := w.add(e); err != nil {
			b.Fatal(err)
		}
	}
	r, err := w.finish()
	if err != nil {
		b.Fatal(err)
	}
	defer r.f.Close()
	buf := make([]byte, runBlock*runEntry)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint64(k[:], uint64(i*7919)%(2*n))
		_, _, err := r.find(Hash(xxh3.Hash128(k[:]).Bytes()), buf)
		if err != nil {
			b.Fatal(err)
		}
	}
}

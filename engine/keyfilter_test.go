package engine

import (
	"fmt"
	"testing"
)

// The fresh-store filter may answer "maybe" for a key never added (a
// Badger read that finds nothing), but never "no" for one that was added:
// that would skip the read of existing state and lose it.
func TestKeyFilterNoFalseNegatives(t *testing.T) {
	const n = 200_000
	// Sized for both loops' keys: testAndAdd adds what it tests.
	f := newKeyFilter(2 * n)
	for i := 0; i < n; i++ {
		f.testAndAdd(fmt.Appendf(nil, "r\x00\x00\x00\x01user%d@example.com", i))
	}
	for i := 0; i < n; i++ {
		if !f.testAndAdd(fmt.Appendf(nil, "r\x00\x00\x00\x01user%d@example.com", i)) {
			t.Fatalf("key %d added but not found", i)
		}
	}
	fp := 0
	for i := 0; i < n; i++ {
		if f.testAndAdd(fmt.Appendf(nil, "r\x00\x00\x00\x02other%d@example.com", i)) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.03 {
		t.Fatalf("false positives %.2f%%, want about 1%%", 100*rate)
	}
}

package bloom

import (
	"fmt"
	"testing"

	"github.com/zeebo/xxh3"
)

func key(s string) (uint64, uint64) {
	h := xxh3.HashString128(s)
	return h.Hi, h.Lo
}

// A key that was added must always be found: the engine would skip the
// read of existing state and lose it, the log would store a redelivered
// event twice.
func TestNoFalseNegatives(t *testing.T) {
	for _, n := range []int{1, 100, 200_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := New(2 * n) // sized for both loops' keys: TestAndAdd adds what it tests
			for i := 0; i < n; i++ {
				f.TestAndAdd(key(fmt.Sprintf("user%d@example.com", i)))
			}
			for i := 0; i < n; i++ {
				if !f.Test(key(fmt.Sprintf("user%d@example.com", i))) {
					t.Fatalf("key %d added but Test misses it", i)
				}
				if !f.TestAndAdd(key(fmt.Sprintf("user%d@example.com", i))) {
					t.Fatalf("key %d added but TestAndAdd misses it", i)
				}
			}
			if n < 1000 {
				return
			}
			fp := 0
			for i := 0; i < n; i++ {
				if f.TestAndAdd(key(fmt.Sprintf("other%d@example.com", i))) {
					fp++
				}
			}
			if rate := float64(fp) / float64(n); rate > 0.03 {
				t.Fatalf("false positives %.2f%%, want about 1%%", 100*rate)
			}
		})
	}
}

// Test must not add: a key tested but never added stays absent.
func TestTestDoesNotAdd(t *testing.T) {
	f := New(1000)
	hi, lo := key("a")
	if f.Test(hi, lo) {
		t.Fatal("empty filter reports a key")
	}
	if f.Test(hi, lo) {
		t.Fatal("Test added the key")
	}
	if f.TestAndAdd(hi, lo) {
		t.Fatal("first TestAndAdd reports the key present")
	}
	if !f.Test(hi, lo) {
		t.Fatal("added key not found")
	}
}

func TestBytes(t *testing.T) {
	if got := New(0).Bytes(); got != 64 {
		t.Fatalf("smallest filter is %d bytes, want one 64-byte block", got)
	}
	if got, want := New(1<<20).Bytes(), (1<<20)*BitsPerKey/8; got != want {
		t.Fatalf("Bytes() = %d, want %d", got, want)
	}
}

func TestUnion(t *testing.T) {
	a, b := New(1000), New(1000)
	for i := 0; i < 500; i++ {
		a.TestAndAdd(key(fmt.Sprint("a", i)))
		b.TestAndAdd(key(fmt.Sprint("b", i)))
	}
	if a.Union(New(100)) {
		t.Fatal("Union of filters of different sizes")
	}
	if !a.Union(b) {
		t.Fatal("Union of filters of the same size refused")
	}
	for i := 0; i < 500; i++ {
		if !a.Test(key(fmt.Sprint("a", i))) || !a.Test(key(fmt.Sprint("b", i))) {
			t.Fatalf("key %d lost by Union", i)
		}
	}
}

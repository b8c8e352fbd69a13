package procs

import (
	"runtime"
	"testing"
)

func TestSetAddsOneUnlessExplicit(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)

	t.Setenv("GOMAXPROCS", "")
	if got := Set(); got != prev {
		t.Fatalf("Set returned %d, want the previous %d", got, prev)
	}
	if got := runtime.GOMAXPROCS(0); got != prev+1 {
		t.Fatalf("GOMAXPROCS = %d after Set, want %d", got, prev+1)
	}
	runtime.GOMAXPROCS(prev)

	t.Setenv("GOMAXPROCS", "1")
	Set()
	if got := runtime.GOMAXPROCS(0); got != prev {
		t.Fatalf("GOMAXPROCS = %d with GOMAXPROCS set in the environment, want it left at %d", got, prev)
	}
}

package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	debug.SetMemoryLimit(math.MaxInt64)
	(&dataFlags{memoryMB: 0}).applyMemoryLimit(getenv)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("0 must leave the limit alone, got %d", got)
	}
	(&dataFlags{memoryMB: 512}).applyMemoryLimit(getenv)
	if got := debug.SetMemoryLimit(-1); got != 512<<20 {
		t.Fatalf("limit = %d, want 512 MiB", got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	env["GOMEMLIMIT"] = "1GiB"
	(&dataFlags{memoryMB: 512}).applyMemoryLimit(getenv)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT must win, got %d", got)
	}
}

// Package procs sets how many goroutines mailfunnel runs at once
// (GOMAXPROCS). Its contract: Set is called once, at the start of a
// process (the binary, or a benchmark that measures what the binary
// does), and only raises the runtime's default by one.
//
// Why one more than the cores: the log, the state store and the exporter
// block in fsync often (the exporter twice per file, a thousand times a
// minute at full speed), and a goroutine blocked in a system call keeps
// its P until the runtime's monitor takes it back, which can take
// milliseconds when the monitor has backed off. With one P per core, a
// core then idles while work waits. Measured on the 2-core machine
// (benchmarks/RESULTS.md, "Export"): a 5M-event export kept the cores 88%
// busy with three Ps against 76% with two, and 96% with fsync turned
// off; ingest throughput did not move.
package procs

import (
	"os"
	"runtime"
)

// Set raises GOMAXPROCS to one more than the runtime's default (the
// cores, or the container's CPU limit), unless the GOMAXPROCS environment
// variable sets it explicitly. It returns the previous value.
func Set() int {
	prev := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" {
		return prev
	}
	runtime.GOMAXPROCS(prev + 1)
	return prev
}

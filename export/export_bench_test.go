package export_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/internal/procs"
	"github.com/mailfunnel/mailfunnel/storage"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// BenchmarkExport measures a full export of a log of synthetic events (20
// campaigns over two providers, 50k recipients, 48 hours of event time in
// random order, bounces with SMTP replies) to Parquet with the default
// Config: reading and decoding the log, classification, partitioning,
// sorting, encoding, zstd, fsync and rename. Each step of 250,000 events
// touches all 48 hours, so the export writes 48 files per step. It reports
// rows/s, bytes per row on disk, and the process's CPU time per row (user +
// system, all goroutines, Badger's background work included), which is less
// sensitive than rows/s to other load on the machine.
//
//	go test ./export -run '^$' -bench 'BenchmarkExport/events=5M' -benchtime 3x -count 3
//	go test ./export -run '^$' -bench 'BenchmarkExport/events=1M' -benchtime 3x -count 3
func BenchmarkExport(b *testing.B) {
	for _, n := range []int{1_000_000, 5_000_000} {
		b.Run(fmt.Sprintf("events=%dM", n/1_000_000), func(b *testing.B) { benchExport(b, n) })
	}
}

func benchExport(b *testing.B, n int) {
	// One more P than cores, as the mailfunnel binary runs (see package
	// procs); GOMAXPROCS=2 in the environment measures without it.
	defer runtime.GOMAXPROCS(procs.Set())
	cfg := storage.DefaultConfig(b.TempDir())
	cfg.NoSync = true
	l := storagetest.NewConfig(b, cfg)
	const chunk = 100_000
	for i := 0; i < n; i += chunk {
		evs := genEvents(42+uint64(i/chunk), chunk, 48)
		for j := 0; j < chunk; j += 20_000 {
			_, err := l.AppendCtx(evs[j : j+20_000]...)
			require.NoError(b, err)
		}
	}
	// Reopen the log (Badger flushes its memtables on close) and settle its
	// compactions before the first export is timed: an export measured
	// right after a 5M-event load would otherwise also pay, at random, for
	// that load's table building (0.2-0.3 µs a row). A periodic export in a
	// server shares the cores with ingest anyway; the "Ingest while the
	// periodic export runs" benchmark measures that.
	require.NoError(b, l.Close())
	l = storagetest.NewConfig(b, cfg)
	require.NoError(b, l.Settle())
	b.ReportAllocs()
	var bytes, rows int64
	var cpu time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		require.NoError(b, l.SetCheckpoint(export.CheckpointName, 0))
		require.NoError(b, l.SetCheckpoint(export.IntentName, 0))
		dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
		i++
		ecfg := export.DefaultConfig(dir)
		ecfg.Classify = fakeClassify
		x, err := export.New(ecfg, l, nil)
		require.NoError(b, err)
		cpu0 := cpuTime(b)
		t0 := time.Now()
		b.StartTimer()

		run, err := x.Export(b.Context())
		require.NoError(b, err)

		b.StopTimer()
		b.Logf("export %d: %v, %.0f rows/s, %v CPU", i, time.Since(t0).Round(time.Millisecond), float64(run.Rows)/time.Since(t0).Seconds(), (cpuTime(b) - cpu0).Round(time.Millisecond))
		cpu += cpuTime(b) - cpu0
		require.Equal(b, int64(n), run.Rows)
		for _, f := range run.Files {
			bytes += f.Bytes
		}
		rows += run.Rows
		require.NoError(b, x.Close())
		require.NoError(b, os.RemoveAll(dir))
		b.StartTimer()
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(bytes)/float64(rows), "bytes/row")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(rows), "cpu-ns/row")
}

// cpuTime is the CPU time the process has used so far.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

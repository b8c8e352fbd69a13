package export_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/storage"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// BenchmarkExport measures a full export of a log of 1M synthetic events
// (20 campaigns over two providers, 50k recipients, 48 hours of event time,
// bounces with SMTP replies) to Parquet: reading and decoding the log,
// classification, partitioning, sorting, encoding, zstd, fsync and rename.
// It reports rows/s and the bytes per row on disk.
//
//	go test -run='^$' -bench=BenchmarkExport -benchtime=3x -count=3 ./export/
func BenchmarkExport(b *testing.B) {
	const n = 1_000_000
	cfg := storage.DefaultConfig(b.TempDir())
	cfg.NoSync = true
	l := storagetest.NewConfig(b, cfg)
	evs := genEvents(42, n, 48)
	for i := 0; i < n; i += 20_000 {
		_, err := l.AppendCtx(evs[i : i+20_000]...)
		require.NoError(b, err)
	}
	evs = nil
	b.ReportAllocs()
	var bytes, rows int64
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
		b.StartTimer()

		run, err := x.Export(b.Context())
		require.NoError(b, err)

		b.StopTimer()
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
}

package storage_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

// BenchmarkLog_Append measures durable appends (fsync on) of unique events
// from concurrent writers, as the ingest server issues them.
//
//	go test ./storage -run '^$' -bench BenchmarkLog_Append -benchtime 400x -count 3
func BenchmarkLog_Append(b *testing.B) {
	for _, tc := range []struct {
		batch, writers int
	}{{500, 8}, {1, 64}} {
		b.Run(fmt.Sprintf("batch=%d/writers=%d", tc.batch, tc.writers), func(b *testing.B) {
			l, err := storage.Open(storage.DefaultConfig(b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var next atomic.Int64
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < tc.writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					batch := make([]event.Event, tc.batch)
					for next.Add(1) <= int64(b.N) {
						for i := range batch {
							batch[i] = ev(int(n.Add(1)))
						}
						if _, err := l.AppendCtx(batch...); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "events/s")
		})
	}
}

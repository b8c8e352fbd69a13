package benchmarks_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/mailfunnel/mailfunnel/benchmarks/ceiling"
	"github.com/mailfunnel/mailfunnel/benchmarks/loadgen"
	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/ingest"
	"github.com/mailfunnel/mailfunnel/ingest/emblue"
	"github.com/mailfunnel/mailfunnel/ingest/sendpulse"
	"github.com/mailfunnel/mailfunnel/query"
	"github.com/mailfunnel/mailfunnel/storage"
)

// startServer wires the same components as 'mailfunnel serve' (durable
// log with fsync, engine following it, Fiber ingest, the query API with
// token "q") on a loopback port.
func startServer(b *testing.B) (string, *engine.Engine) {
	b.Helper()
	log, err := storage.Open(storage.DefaultConfig(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	eng, err := engine.Open(engine.DefaultConfig(b.TempDir()), log)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	srv, err := ingest.NewServer(ingest.Config{Token: "t"}, log, log, sendpulse.New(), emblue.New())
	if err != nil {
		b.Fatal(err)
	}
	api, err := query.New(query.Config{Token: "q"}, eng, log)
	if err != nil {
		b.Fatal(err)
	}
	app := fiber.New(fiber.Config{BodyLimit: 10 << 20, DisableStartupMessage: true})
	srv.Mount(app)
	api.Mount(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	b.Cleanup(func() {
		_ = app.ShutdownWithTimeout(5 * time.Second)
		cancel()
		<-done
		eng.Close()
		log.Close()
	})
	return ln.Addr().String(), eng
}

// startCeiling is the baseline: a bare Fiber server that reads the body
// and answers 200 (package ceiling), the most any Fiber-based ingest can do
// on this machine with this load generator.
func startCeiling(b *testing.B) string {
	b.Helper()
	app := ceiling.New(10 << 20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	b.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	return ln.Addr().String()
}

// BenchmarkIngest measures end-to-end ingest over loopback, load generator
// included, with fsync-durable acknowledgements.
//
//	go test ./benchmarks -run '^$' -bench 'BenchmarkIngest/provider=sendpulse' -benchtime 1000x -count 3
//	go test ./benchmarks -run '^$' -bench 'BenchmarkIngest/provider=emblue' -benchtime 20000x -count 3
//
// server=ceiling is the baseline of the same run: a bare Fiber handler
// that reads the body and answers 200. For server=mailfunnel the freshness
// probe runs along (fresh-p50-ms, fresh-p99-ms: time from a 200 to the
// event counted in /v1/funnel). make bench-ingest runs the same load
// against the built binaries and a Benthos peer.
func BenchmarkIngest(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  loadgen.Config
	}{
		{"provider=sendpulse/batch=500", loadgen.Config{Mode: loadgen.SendPulse, BatchSize: 500, Connections: 8}},
		{"provider=sendpulse/batch=500/conns=32", loadgen.Config{Mode: loadgen.SendPulse, BatchSize: 500, Connections: 32}},
		{"provider=emblue/conns=64", loadgen.Config{Mode: loadgen.EmBlue, Connections: 64}},
	} {
		for _, server := range []string{"mailfunnel", "ceiling"} {
			b.Run(tc.name+"/server="+server, func(b *testing.B) {
				cfg := tc.cfg
				var eng *engine.Engine
				if server == "ceiling" {
					cfg.Addr = startCeiling(b)
				} else {
					cfg.Addr, eng = startServer(b)
					cfg.Probe = &loadgen.Probe{APIToken: "q"}
				}
				cfg.Token = "t"
				cfg.Requests = int64(b.N)
				cfg.Seed = 1
				b.ResetTimer()
				res, err := loadgen.Run(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if res.Errors > 0 || res.Non2xx > 0 {
					b.Fatalf("errors: %v", res)
				}
				b.ReportMetric(res.EventsPerS, "events/s")
				b.ReportMetric(res.ReqPerS, "req/s")
				b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
				if f := res.Freshness; f != nil && f.Samples > 0 {
					b.ReportMetric(float64(f.P50.Microseconds())/1000, "fresh-p50-ms")
					b.ReportMetric(float64(f.P99.Microseconds())/1000, "fresh-p99-ms")
				}
				if eng != nil && res.Events > 0 {
					// How far the engine kept up while the load ran, and the
					// state keys it wrote per event applied: most of its cost.
					st := eng.Stats()
					b.ReportMetric(float64(st.Applied)/float64(res.Events), "applied/event")
					if st.Applied > 0 {
						b.ReportMetric(float64(st.Keys)/float64(st.Applied), "state-keys/applied")
					}
				}
			})
		}
	}
}

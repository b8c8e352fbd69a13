// Command ceiling runs the ingest benchmarks' baseline server (package
// benchmarks/ceiling) as its own process, so that make bench-ingest can
// measure it like mailfunnel and the Benthos peer: same load generator,
// same loopback, its own RSS.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mailfunnel/mailfunnel/benchmarks/ceiling"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	bodyLimit := flag.Int("body-limit", 10<<20, "largest body in bytes")
	flag.Parse()
	app := ceiling.New(*bodyLimit)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = app.ShutdownWithTimeout(5 * time.Second)
	}()
	if err := app.Listen(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

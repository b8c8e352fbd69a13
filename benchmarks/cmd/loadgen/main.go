// Command loadgen posts generated webhook traffic at a mailfunnel server and
// prints events/s, requests/s and latency percentiles. See
// benchmarks/RESULTS.md for how the published numbers were made.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/mailfunnel/mailfunnel/benchmarks/loadgen"
)

func main() {
	var cfg loadgen.Config
	var mode string
	var asJSON bool
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "server host:port")
	flag.StringVar(&cfg.Path, "path", "", "webhook path (default /v1/webhooks/<mode>)")
	flag.StringVar(&cfg.Token, "token", os.Getenv("MAILFUNNEL_INGEST_TOKEN"), "ingest token (default $MAILFUNNEL_INGEST_TOKEN)")
	flag.StringVar(&mode, "mode", "sendpulse", "sendpulse (batches) or emblue (single events)")
	flag.IntVar(&cfg.BatchSize, "batch", 500, "events per SendPulse request")
	flag.IntVar(&cfg.Connections, "conns", 64, "concurrent connections")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to run")
	flag.Int64Var(&cfg.Requests, "requests", 0, "stop after this many requests (0: run for -duration)")
	flag.IntVar(&cfg.Campaigns, "campaigns", 20, "distinct campaigns")
	flag.IntVar(&cfg.Recipients, "recipients", 100000, "distinct recipients")
	flag.BoolVar(&asJSON, "json", false, "print the result as JSON")
	var probe loadgen.Probe
	flag.StringVar(&probe.APIToken, "api-token", "", "query API token: if set, probe freshness (ack to visible in /v1/funnel) during the load")
	flag.StringVar(&probe.Source, "probe-source", "", "source of the probe's funnel queries (default: the mode's provider name)")
	flag.DurationVar(&probe.Every, "probe-every", 100*time.Millisecond, "interval between freshness probes")
	flag.Parse()
	cfg.Mode = loadgen.Mode(mode)
	if probe.APIToken != "" {
		cfg.Probe = &probe
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	fmt.Println(res)
}

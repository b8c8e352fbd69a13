// Command benthos is the peer of the ingest benchmark (make bench-ingest):
// Benthos core as an http_server -> file pipeline, the plainest generic
// stream processor setup that takes the same webhooks mailfunnel takes.
//
// It lives in its own module so that mailfunnel's module never depends on
// Benthos. Build it with
//
//	cd benchmarks/benthos && go build -o ../../bin/benthos-peer .
//
// The pipeline (see pipelineYAML): the http_server input accepts POSTs on
// -path; a JSON array body (SendPulse) is unarchived into one message per
// element, so that the file output writes one line per event as it does
// for a single object (emBlue). The HTTP answer is sent after the output has
// written every message of the request. The file output does not fsync:
// unlike mailfunnel's acknowledgements, Benthos' are not durable across a
// power loss. There is no authentication, dedupe, parsing into an event
// model or aggregation: the peer measures what an HTTP-to-file stream
// processor costs, not an equivalent of mailfunnel.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
)

// pipelineYAML is the stream config; the %q verbs take the listen address,
// the path and the output file.
const pipelineYAML = `
input:
  http_server:
    address: %q
    path: %q
    allowed_verbs: [POST]
    timeout: 30s
pipeline:
  processors:
    - switch:
        - check: 'content().has_prefix("[")'
          processors:
            - unarchive:
                format: json_array
output:
  file:
    path: %q
    codec: lines
logger:
  level: WARN
`

func main() {
	addr := flag.String("addr", "127.0.0.1:4195", "listen address")
	path := flag.String("path", "/v1/webhooks/{provider}", "webhook path (gorilla/mux pattern)")
	out := flag.String("out", "", "output file, one line per event (required)")
	printConfig := flag.Bool("print-config", false, "print the stream config and exit")
	flag.Parse()
	if *out == "" && !*printConfig {
		fmt.Fprintln(os.Stderr, "benthos: -out is required")
		os.Exit(2)
	}
	conf := fmt.Sprintf(pipelineYAML, *addr, *path, *out)
	if *printConfig {
		fmt.Print(conf)
		return
	}
	if err := run(conf); err != nil {
		fmt.Fprintln(os.Stderr, "benthos:", err)
		os.Exit(1)
	}
}

func run(conf string) error {
	b := service.NewStreamBuilder()
	if err := b.SetYAML(conf); err != nil {
		return fmt.Errorf("stream config: %w", err)
	}
	stream, err := b.Build()
	if err != nil {
		return fmt.Errorf("build stream: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = stream.Run(ctx)
	if ctx.Err() != nil {
		// Stopped by a signal: let in-flight messages finish.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return stream.Stop(sctx)
	}
	return err
}

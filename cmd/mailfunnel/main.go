// Command mailfunnel is the mailfunnel server and its operator tools:
// serve, export, rebuild, classify and version. It only wires the packages
// together; every behaviour lives in them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailfunnel/mailfunnel/internal/procs"
)

func main() {
	procs.Set()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	m := &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, stopSignals: stop}
	err := m.Run(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailfunnel:", err)
		os.Exit(1)
	}
}

// Main holds the process's standard streams and environment, so that
// commands can be run in tests without touching the real ones.
type Main struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// stopSignals restores default signal handling, so that a second
	// SIGINT/SIGTERM during shutdown kills the process at once.
	stopSignals func()
}

const usage = `mailfunnel: stream analytics for email webhook events

Usage: mailfunnel <command> [flags]

Commands:
  serve      run the server: ingest, engine, query API, periodic export
  export     export everything not yet exported to Parquet, then exit
  rebuild    recompute every aggregate from the event log, then exit
  classify   classify SMTP bounce replies (JSON lines on stdin)
  version    print the version

Run 'mailfunnel <command> -h' for a command's flags. Every flag of serve,
export and rebuild is also read from MAILFUNNEL_<NAME> (upper case, '-' as
'_'); a flag given on the command line wins.
`

// Run dispatches to the subcommand named by args[0].
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return (&ServeCommand{main: m}).Run(ctx, args[1:])
	case "rebuild":
		return (&RebuildCommand{main: m}).Run(ctx, args[1:])
	case "export":
		return (&ExportCommand{main: m}).Run(ctx, args[1:])
	case "classify":
		return (&ClassifyCommand{main: m}).Run(ctx, args[1:])
	case "version", "-version", "--version":
		fmt.Fprintln(m.Stdout, "mailfunnel", version())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	}
	fmt.Fprint(m.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

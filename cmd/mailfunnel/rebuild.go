package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/storage"
)

// RebuildCommand recomputes every aggregate from the event log: it moves
// the state store aside, replays the whole log into a fresh one, and only
// then removes the old state, so an interrupted rebuild leaves a usable
// store behind.
type RebuildCommand struct {
	main  *Main
	data  dataFlags
	rules ruleFlags
}

// Run rebuilds and reports progress on stderr: a progress bar on a
// terminal, plain lines otherwise.
func (r *RebuildCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mailfunnel rebuild", flag.ContinueOnError)
	fs.SetOutput(r.main.Stderr)
	r.data.register(fs)
	r.rules.register(fs)
	cache := 0
	registerRecipientCache(fs, &cache)
	debugAddr := fs.String("debug-addr", "", "address for Go's profiling endpoints (/debug/pprof/) while the rebuild runs, without authentication: keep it on loopback (default: off)")
	if err := parseFlags(fs, args, r.main.Getenv); err != nil {
		return err
	}
	if err := checkRecipientCache(cache); err != nil {
		return err
	}
	// A rebuild of a large log runs for minutes: its profile is how an
	// operator sees where they go.
	_, stopDebug, err := startDebug(*debugAddr, slog.New(slog.NewTextHandler(r.main.Stderr, nil)))
	if err != nil {
		return err
	}
	defer stopDebug()
	r.data.applyMemoryLimit(r.main.Getenv)
	log, err := storage.Open(storage.DefaultConfig(r.data.logDir()))
	if errors.Is(err, storage.ErrLocked) {
		return fmt.Errorf("%w: stop 'mailfunnel serve' on %s before rebuilding (the server owns the state it would rebuild)", err, r.data.dir)
	}
	if err != nil {
		return err
	}
	defer log.Close()
	if first := log.FirstSeq(); first > 1 {
		return fmt.Errorf("the log starts at seq %d (retention removed the events before it): a rebuild would lose their aggregates, so the current state is kept", first)
	}

	state := r.data.stateDir()
	next := state + ".rebuild"
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("remove stale rebuild dir: %w", err)
	}
	// Operators' suppression lifts are not in the log: carry the journal
	// over, so that the rebuilt state replays each at its place.
	var lifts []engine.Lift
	if _, err := os.Stat(state); err == nil {
		if lifts, err = engine.ReadLifts(state); err != nil {
			return fmt.Errorf("read lift journal: %w", err)
		}
	}
	ecfg := engine.DefaultConfig(next).ForBulk(next)
	ecfg.RecipientCache = cache
	if err := r.rules.apply(&ecfg); err != nil {
		return err
	}
	eng, err := engine.Open(ecfg, log)
	if err != nil {
		return err
	}
	if err := eng.ImportLifts(lifts); err != nil {
		eng.Close()
		return err
	}
	total := log.LastSeq()
	start := time.Now()
	p := newProgress(r.main.Stderr, total)
	err = eng.CatchUp(ctx, p.update)
	p.done()
	if cerr := eng.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rebuild interrupted, the previous state is untouched: %w", err)
	}
	old := state + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(state, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("move old state aside: %w", err)
	}
	if err := os.Rename(next, state); err != nil {
		return fmt.Errorf("install rebuilt state: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(r.main.Stderr, "rebuilt %d events in %v (%.0f events/s)\n", total, el.Round(time.Millisecond), float64(total)/max(el.Seconds(), 1e-9))
	return nil
}

// progress prints rebuild progress: a redrawn bar on a terminal, a line
// every few seconds otherwise (logs, CI).
type progress struct {
	w     io.Writer
	total uint64
	tty   bool
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, total uint64) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, total: total, tty: tty, start: time.Now()}
}

func (p *progress) update(applied uint64) {
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every && applied < p.total {
		return
	}
	p.last = now
	frac := 1.0
	if p.total > 0 {
		frac = float64(applied) / float64(p.total)
	}
	rate := float64(applied) / max(now.Sub(p.start).Seconds(), 1e-9)
	if p.tty {
		const width = 30
		n := int(frac * width)
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < n {
				bar[i] = '='
			}
		}
		fmt.Fprintf(p.w, "\r[%s] %5.1f%% %d/%d events %.0f/s", bar, frac*100, applied, p.total, rate)
		return
	}
	fmt.Fprintf(p.w, "rebuild: %d/%d events (%.1f%%), %.0f events/s\n", applied, p.total, frac*100, rate)
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

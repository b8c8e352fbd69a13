package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	runtimepprof "runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/ingest"
	"github.com/mailfunnel/mailfunnel/ingest/emblue"
	"github.com/mailfunnel/mailfunnel/ingest/sendpulse"
	"github.com/mailfunnel/mailfunnel/internal/secret"
	"github.com/mailfunnel/mailfunnel/query"
	"github.com/mailfunnel/mailfunnel/storage"
)

// ServeCommand runs the server.
type ServeCommand struct {
	main *Main

	addr           string
	data           dataFlags
	ingestToken    string
	apiToken       string
	bodyLimit      int
	dedupeHorizon  time.Duration
	dedupeFilterMB int
	dedupeTailKeys int
	sourceTZ       string
	maxLag         uint64
	readyLag       uint64
	maxInFlight    int
	recipientCache int
	commitInterval time.Duration
	debugAddr      string
	rules          ruleFlags
	gcInterval     time.Duration
	retention      time.Duration
	retentionEvery time.Duration
	shutdownWait   time.Duration
	logLevel       string
	logFormat      string
	exportWorkers  int
}

// dataFlags are the flags shared by serve, export and rebuild.
type dataFlags struct {
	dir            string
	exportDir      string
	exportInterval time.Duration
	memoryMB       int
}

// applyMemoryLimit sets the Go heap's soft limit from --memory-limit-mb,
// unless GOMEMLIMIT is set. Without one, the heap may grow to twice its
// live size before a collection; with it, the GC works harder instead
// when the process nears the limit (it never fails an allocation).
func (d *dataFlags) applyMemoryLimit(getenv func(string) string) {
	if d.memoryMB > 0 && getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(d.memoryMB) << 20)
	}
}

func (d *dataFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&d.memoryMB, "memory-limit-mb", 0, "soft limit of the Go heap in MiB, for memory-tight machines: the GC works harder near it (GOMEMLIMIT wins; 0: none)")
	fs.StringVar(&d.dir, "data", "./data", "directory for the event log, engine state, tokens and default exports")
	fs.StringVar(&d.exportDir, "export-dir", "", "where Parquet exports go (default <data>/exports)")
}

// ruleFlags are the flags the engine's derived state depends on (the
// suppression rule, the allowed lateness), shared by serve and rebuild so
// that a rebuild can reproduce the state.
type ruleFlags struct {
	softCount  int
	softWindow time.Duration
	lateness   time.Duration
}

func (f *ruleFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.softCount, "suppress-soft-count", 3, "suppress a recipient after this many soft (or undetermined) bounces within --suppress-soft-window (negative: never)")
	fs.DurationVar(&f.softWindow, "suppress-soft-window", 7*24*time.Hour, "event-time window of --suppress-soft-count")
	fs.DurationVar(&f.lateness, "allowed-lateness", time.Hour, "how far behind its source's newest event time an event may be before it counts as late (it is counted either way)")
}

func (f *ruleFlags) apply(cfg *engine.Config) error {
	if f.softCount == 0 || f.softWindow <= 0 {
		return fmt.Errorf("--suppress-soft-count must not be 0 (negative turns the rule off) and --suppress-soft-window must be positive")
	}
	if f.lateness <= 0 {
		return fmt.Errorf("--allowed-lateness must be positive")
	}
	cfg.SuppressSoftCount, cfg.SuppressSoftWindow, cfg.AllowedLateness = f.softCount, f.softWindow, f.lateness
	return nil
}

func (d *dataFlags) logDir() string   { return filepath.Join(d.dir, "log") }
func (d *dataFlags) stateDir() string { return filepath.Join(d.dir, "state") }
func (d *dataFlags) exports() string {
	if d.exportDir != "" {
		return d.exportDir
	}
	return filepath.Join(d.dir, "exports")
}

func (s *ServeCommand) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("mailfunnel serve", flag.ContinueOnError)
	fs.SetOutput(s.main.Stderr)
	fs.StringVar(&s.addr, "addr", "127.0.0.1:8080", "listen address")
	s.data.register(fs)
	fs.DurationVar(&s.data.exportInterval, "export-interval", 5*time.Minute, "how often the periodic Parquet export runs (0 turns it off)")
	fs.IntVar(&s.exportWorkers, "export-workers", 0, "goroutines that encode Parquet in the server's exports (periodic and POST /v1/exports); 0: one per core. Fewer make an export take longer and leave more CPU to ingest meanwhile")
	fs.StringVar(&s.ingestToken, "ingest-token", "", "secret webhook senders present (default: generated on first start, kept in <data>/ingest.token)")
	fs.StringVar(&s.apiToken, "api-token", "", "secret query clients present (default: generated on first start, kept in <data>/api.token)")
	fs.IntVar(&s.bodyLimit, "body-limit", 10<<20, "largest webhook body in bytes; larger bodies get 413")
	fs.DurationVar(&s.dedupeHorizon, "dedupe-horizon", 7*24*time.Hour, "how long a delivered event is remembered to drop redeliveries")
	fs.IntVar(&s.dedupeFilterMB, "dedupe-filter-mb", 64, "memory for the Bloom filters that spare a new event its dedupe lookup (about 53M events per horizon at 64; more only means more lookups; negative: off)")
	fs.IntVar(&s.dedupeTailKeys, "dedupe-tail-keys", 1<<20, "hashes of the newest events the dedupe index keeps in memory (about 40 bytes each) before writing them to a run file; after a crash, start-up reads that many events again")
	fs.StringVar(&s.sourceTZ, "source-tz", "", "time zones of sources whose timestamps carry none, as name=Zone[,name=Zone], e.g. emblue=America/Argentina/Buenos_Aires (default UTC)")
	fs.Uint64Var(&s.maxLag, "max-lag", 20_000_000, "answer webhooks 503 while the engine is more than this many events behind the log (0: never); the default holds about a minute of a burst of batches, some 3 GB of log")
	fs.Uint64Var(&s.readyLag, "ready-lag", 10_000, "/readyz fails while the engine is more than this many events behind")
	fs.IntVar(&s.maxInFlight, "max-in-flight", 2048, "webhook requests processed at once; more wait up to 1s, then get 503")
	registerRecipientCache(fs, &s.recipientCache)
	fs.DurationVar(&s.commitInterval, "commit-interval", engine.DefaultCommitInterval, "least time between two engine commits while it follows the log: longer lets one state transaction cover more webhooks (less CPU per event), shorter shows new events sooner (negative: no wait)")
	s.rules.register(fs)
	fs.StringVar(&s.debugAddr, "debug-addr", "", "address for Go's profiling endpoints (/debug/pprof/), without authentication: keep it on loopback (default: off)")
	fs.DurationVar(&s.gcInterval, "gc-interval", 10*time.Minute, "how often Badger value-log garbage collection runs (0 turns it off)")
	fs.DurationVar(&s.retention, "retention", 0, "delete log entries received longer ago than this, once the engine (and the exporter) have consumed them; aggregates stay (0: keep everything)")
	fs.DurationVar(&s.retentionEvery, "retention-interval", time.Minute, "how often --retention is applied")
	fs.DurationVar(&s.shutdownWait, "shutdown-timeout", 15*time.Second, "how long shutdown waits for in-flight requests")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&s.logFormat, "log-format", "text", "text or json")
	return fs
}

func parseLocations(spec string) (map[string]*time.Location, error) {
	out := map[string]*time.Location{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, zone, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("--source-tz %q: want name=Zone", part)
		}
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return nil, fmt.Errorf("--source-tz %q: %w", part, err)
		}
		out[name] = loc
	}
	return out, nil
}

// token returns the flag's value or the token kept in the data dir,
// generating it on first start (and logging it, once).
func token(logger *slog.Logger, given, dir, name string) (string, error) {
	if given != "" {
		return given, nil
	}
	t, created, err := secret.LoadOrCreate(filepath.Join(dir, name+".token"))
	if err != nil {
		return "", err
	}
	if created {
		logger.Info("generated "+name+" token; it is kept in the data dir and not logged again",
			"token", t, "file", filepath.Join(dir, name+".token"))
	}
	return t, nil
}

// Run starts the server and blocks until ctx ends or a component fails.
func (s *ServeCommand) Run(ctx context.Context, args []string) error {
	fs := s.flags()
	if err := parseFlags(fs, args, s.main.Getenv); err != nil {
		return err
	}
	if s.exportWorkers < 0 {
		return fmt.Errorf("--export-workers must not be negative (0: one per core)")
	}
	if err := checkRecipientCache(s.recipientCache); err != nil {
		return err
	}
	if s.dedupeTailKeys <= 0 {
		return fmt.Errorf("--dedupe-tail-keys must be positive")
	}
	s.data.applyMemoryLimit(s.main.Getenv)
	logger, err := newLogger(s.main.Stderr, s.logLevel, s.logFormat)
	if err != nil {
		return err
	}
	locs, err := parseLocations(s.sourceTZ)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.data.dir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	ingestToken, err := token(logger, s.ingestToken, s.data.dir, "ingest")
	if err != nil {
		return err
	}
	apiToken, err := token(logger, s.apiToken, s.data.dir, "api")
	if err != nil {
		return err
	}

	start := time.Now()
	lcfg := storage.DefaultConfig(s.data.logDir())
	lcfg.DedupeHorizon = s.dedupeHorizon
	lcfg.DedupeFilterMB = s.dedupeFilterMB
	lcfg.DedupeTailKeys = s.dedupeTailKeys
	lcfg.Logger = logger.With("component", "storage")
	var log *storage.Log
	labeled("storage", func() { log, err = storage.Open(lcfg) })
	if errors.Is(err, storage.ErrLocked) {
		return fmt.Errorf("%w: is another 'mailfunnel serve' running on %s?", err, s.data.dir)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := log.Close(); err != nil {
			logger.Error("close event log", "err", err)
		}
	}()
	ecfg := engine.DefaultConfig(s.data.stateDir())
	ecfg.RecipientCache = s.recipientCache
	ecfg.CommitInterval = s.commitInterval
	if err := s.rules.apply(&ecfg); err != nil {
		return err
	}
	ecfg.Logger = logger.With("component", "engine")
	var eng *engine.Engine
	labeled("engine", func() { eng, err = engine.Open(ecfg, log) })
	if err != nil {
		return err
	}
	defer func() {
		if err := eng.Close(); err != nil {
			logger.Error("close engine state", "err", err)
		}
	}()
	logger.Info("opened data dir", "dir", s.data.dir, "last_seq", log.LastSeq(), "applied", eng.Applied(),
		"duration", time.Since(start))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerEngineMetrics(reg, log, eng)

	var draining atomic.Bool
	overloaded := func() error {
		if lag := eng.Lag(); s.maxLag > 0 && lag > s.maxLag {
			return fmt.Errorf("engine is %d events behind the log (limit --max-lag %d)", lag, s.maxLag)
		}
		return nil
	}
	ing, err := ingest.NewServer(ingest.Config{
		Token: ingestToken, MaxInFlight: s.maxInFlight, Locations: locs, Overloaded: overloaded,
		Logger: logger.With("component", "ingest"), Registerer: reg,
	}, log, log, sendpulse.New(), emblue.New())
	if err != nil {
		return err
	}
	api, err := query.New(query.Config{Token: apiToken, Logger: logger.With("component", "query")}, eng, log)
	if err != nil {
		return err
	}

	xcfg := export.DefaultConfig(s.data.exports())
	// An operator who would rather keep CPU for ingest than finish
	// exports fast lowers it (0: export's default, one per core).
	xcfg.Workers = s.exportWorkers
	xcfg.Classify = classifyEvent
	xcfg.Logger = logger.With("component", "export")
	exporter, err := export.New(xcfg, log, eng)
	if err != nil {
		return err
	}
	defer exporter.Close()

	app := newApp(s.bodyLimit, reg)
	ready := func() (bool, string, map[string]any) {
		lag := eng.Lag()
		d := map[string]any{"lag": lag, "applied": eng.Applied(), "last_seq": log.LastSeq(), "first_seq": log.FirstSeq()}
		switch {
		case draining.Load():
			return false, "shutting down", d
		case lag > s.readyLag:
			return false, fmt.Sprintf("engine is %d events behind the log", lag), d
		}
		return true, "", d
	}
	query.MountProbes(app, ready, reg)
	ing.Mount(app)
	v1 := api.Mount(app)
	query.MountExports(v1, exporter)
	// engCtx ends the engine, the exporter and a running replay, after
	// the HTTP server has stopped.
	engCtx, engCancel := context.WithCancel(context.Background())
	defer engCancel()
	query.MountReplay(engCtx, v1, eng)
	app.Use(func(c *fiber.Ctx) error {
		return query.Error(c, fiber.StatusNotFound, fmt.Sprintf("no route %s %s", c.Method(), c.Path()))
	})

	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.addr, err)
	}
	debugAddr, stopDebug, err := startDebug(s.debugAddr, logger)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopDebug()
	if err := writeServerInfo(s.data.dir, ln.Addr().String(), debugAddr); err != nil {
		logger.Warn("write server info", "err", err)
	}
	defer os.Remove(filepath.Join(s.data.dir, serverInfoFile))
	logger.Info("listening", "addr", ln.Addr().String(), "version", version())

	g, gctx := errgroup.WithContext(context.Background())
	g.Go(func() (err error) { labeled("engine", func() { err = eng.Run(engCtx) }); return })
	g.Go(func() (err error) { labeled("http", func() { err = app.Listener(ln) }); return })
	g.Go(func() (err error) {
		labeled("export", func() { err = exporter.RunEvery(engCtx, s.data.exportInterval) })
		return
	})
	if s.gcInterval > 0 {
		g.Go(func() error { return runGC(engCtx, s.gcInterval, log, logger) })
	}
	if s.retention > 0 {
		consumed := func() (uint64, error) {
			upTo := eng.Applied()
			cp, err := log.Checkpoint(export.CheckpointName)
			if err != nil {
				return 0, err
			}
			// Events the exporter has yet to write stay, unless exports
			// are off and never ran.
			if s.data.exportInterval > 0 || cp > 0 {
				upTo = min(upTo, cp)
			}
			return upTo, nil
		}
		g.Go(func() error { return runRetention(engCtx, s.retentionEvery, s.retention, log, consumed, logger) })
	}
	g.Go(func() error {
		select {
		case <-ctx.Done():
			logger.Info("shutting down", "cause", context.Cause(ctx))
		case <-gctx.Done():
			logger.Error("a component failed; shutting down")
		}
		if s.main.stopSignals != nil {
			s.main.stopSignals() // a second signal now kills at once
		}
		draining.Store(true)
		t := time.Now()
		if err := app.ShutdownWithTimeout(s.shutdownWait); err != nil {
			logger.Warn("http shutdown", "err", err)
		}
		logger.Info("http server stopped", "duration", time.Since(t))
		// The engine applies the rest of the log and commits; the exporter
		// finishes its step or removes its temp file.
		engCancel()
		logger.Info("engine and exporter stopping", "lag", eng.Lag())
		return nil
	})
	err = g.Wait()
	logger.Info("engine stopped", "applied", eng.Applied(), "last_seq", log.LastSeq())
	return err
}

// tick calls fn every `every` until ctx ends.
func tick(ctx context.Context, every time.Duration, fn func()) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn()
		}
	}
}

func runGC(ctx context.Context, every time.Duration, log *storage.Log, logger *slog.Logger) error {
	return tick(ctx, every, func() {
		if err := log.RunGC(); err != nil {
			logger.Warn("value log gc", "err", err)
		}
	})
}

// runRetention trims the log every `every` to the events received within
// keep, never past what consumed reports as read by every reader.
func runRetention(ctx context.Context, every, keep time.Duration, log *storage.Log, consumed func() (uint64, error), logger *slog.Logger) error {
	return tick(ctx, every, func() {
		upTo, err := consumed()
		if err != nil {
			logger.Warn("retention", "err", err)
			return
		}
		var total uint64
		for {
			n, err := log.Trim(ctx, upTo, time.Now().Add(-keep))
			if err != nil {
				if ctx.Err() == nil {
					logger.Warn("retention", "err", err)
				}
				break
			}
			if n == 0 {
				break
			}
			total += n
		}
		if total > 0 {
			logger.Info("retention: log trimmed", "events", total, "first_seq", log.FirstSeq())
		}
	})
}

const serverInfoFile = "server.json"

// debugServer serves Go's profiling endpoints (net/http/pprof), for
// --debug-addr. They are kept off the API's listener: they need no token,
// and a CPU profile holds a connection for its whole duration.
// startDebug serves Go's profiling endpoints on addr (--debug-addr; ""
// serves nothing) and returns the address it listens on and how to stop.
func startDebug(addr string, logger *slog.Logger) (string, func(), error) {
	if addr == "" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--debug-addr: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	addr = ln.Addr().String()
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		logger.Warn("the profiling endpoints are not on loopback: anyone who reaches them can read the process's memory profile and arguments", "addr", addr)
	}
	logger.Info("profiling endpoints listening", "addr", addr, "path", "/debug/pprof/")
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("profiling endpoints", "err", err)
		}
	}()
	return addr, func() { _ = srv.Close() }, nil
}

// writeServerInfo records where the running server listens, so that
// 'mailfunnel export' can ask it to export instead of touching the locked
// data dir.
func writeServerInfo(dir, addr, debugAddr string) error {
	info := map[string]any{"addr": addr, "pid": os.Getpid()}
	if debugAddr != "" {
		info["debug_addr"] = debugAddr
	}
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, serverInfoFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, serverInfoFile))
}

func registerEngineMetrics(reg *prometheus.Registry, log *storage.Log, eng *engine.Engine) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_log_last_seq", Help: "Sequence of the newest durable event."},
			func() float64 { return float64(log.LastSeq()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_log_first_seq", Help: "Oldest sequence still in the log (above 1 once retention trimmed it)."},
			func() float64 { return float64(log.FirstSeq()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_engine_applied_seq", Help: "Sequence of the last event applied and committed by the engine."},
			func() float64 { return float64(eng.Applied()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_engine_lag_events", Help: "Durable events not yet applied by the engine."},
			func() float64 { return float64(eng.Lag()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailfunnel_engine_commits_total", Help: "State transactions committed by the engine."},
			func() float64 { return float64(eng.Stats().Commits) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_engine_recipient_cache_records", Help: "Recipient records in the engine's cache after its last commit (bounded by --recipient-cache)."},
			func() float64 { return float64(eng.Stats().CachedRecords) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_engine_recipient_cache_bytes", Help: "Memory of the recipient cache's encoded records, garbage awaiting reclaim included."},
			func() float64 { return float64(eng.Stats().CachedRecordBytes) }),
		lateCollector{eng},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_log_lsm_bytes", Help: "Size of the event log's LSM tree."},
			func() float64 { l, _ := log.Size(); return float64(l) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_log_vlog_bytes", Help: "Size of the event log's value log."},
			func() float64 { _, v := log.Size(); return float64(v) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_dedupe_filter_ready", Help: "1 once the dedupe filters hold every stored event hash and spare new events their lookup."},
			func() float64 {
				if log.DedupeStats().Ready {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_dedupe_filter_bytes", Help: "Memory of the dedupe filters."},
			func() float64 { return float64(log.DedupeStats().Bytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailfunnel_dedupe_lookups_skipped_total", Help: "New events the dedupe filters knew to be new (no lookup in the store)."},
			func() float64 { return float64(log.DedupeStats().Skipped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailfunnel_dedupe_lookups_total", Help: "Events looked up in the log's dedupe index (filters not ready, a redelivery, or a false positive)."},
			func() float64 { return float64(log.DedupeStats().Reads) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_dedupe_runs", Help: "Run files of the dedupe index (sorted event hashes, merged past ten)."},
			func() float64 { return float64(log.DedupeStats().Runs) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfunnel_dedupe_run_hashes", Help: "Event hashes in the dedupe index's run files (the newest, up to about a million, are in memory only)."},
			func() float64 { return float64(log.DedupeStats().RunHashes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mailfunnel_dedupe_run_repairs_total", Help: "Dedupe run files found corrupt (by their checksums) and written again from the log."},
			func() float64 { return float64(log.DedupeStats().RunRepairs) }),
	)
}

// lateCollector exports the engine's late events per source.
type lateCollector struct{ eng *engine.Engine }

var lateDesc = prometheus.NewDesc("mailfunnel_late_events_total",
	"Events applied behind their source's watermark (counted in their windows all the same).", []string{"source"}, nil)

func (c lateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lateDesc }

func (c lateCollector) Collect(ch chan<- prometheus.Metric) {
	for src, n := range c.eng.LateEvents() {
		ch <- prometheus.MustNewConstMetric(lateDesc, prometheus.CounterValue, float64(n), src)
	}
}

// labeled runs fn with the pprof label component=name. Goroutines inherit
// their creator's labels, so Badger's and the log's background goroutines
// started by an Open carry it too: a CPU profile from --debug-addr splits
// by component (go tool pprof -tags), which a stack alone cannot do when
// two Badger databases share the same code.
func labeled(name string, fn func()) {
	runtimepprof.Do(context.Background(), runtimepprof.Labels("component", name), func(context.Context) { fn() })
}

// registerRecipientCache adds --recipient-cache, which serve and rebuild
// share.
func registerRecipientCache(fs *flag.FlagSet, n *int) {
	fs.IntVar(n, "recipient-cache", engine.DefaultConfig("").RecipientCache,
		"per-recipient records kept in memory, most of them encoded at about 100 bytes each, about 200 bytes per record at most with the index and garbage (the rest stay in the state store; a rebuild works through its recipients in groups of at most about 100,000 records, fewer if this is smaller)")
}

// checkRecipientCache refuses a --recipient-cache the engine cannot use,
// naming the flag (the engine's own error names its config field).
func checkRecipientCache(n int) error {
	if n < 0 {
		return fmt.Errorf("--recipient-cache must not be negative (0: the default, %d)", engine.DefaultConfig("").RecipientCache)
	}
	return nil
}

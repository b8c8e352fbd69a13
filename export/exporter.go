package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

// Source is the event log as the exporter needs it; *storage.Log implements
// it.
//
// ReadFrom calls fn for every event with Seq >= from in sequence order,
// without gaps; the *event.Event is reused after fn returns, but its strings
// may be kept. An error returned by fn ends the scan and is returned.
// LastSeq is the newest durable sequence. Checkpoint and SetCheckpoint read
// and durably write a named position (0 when never set).
type Source interface {
	ReadFrom(ctx context.Context, from uint64, fn func(*event.Event) error) error
	LastSeq() uint64
	Checkpoint(name string) (uint64, error)
	SetCheckpoint(name string, seq uint64) error
}

// viewSource is a Source that can also pass events whose strings are
// valid only during fn (storage.Log.ReadFromView). The exporter copies
// every string into its blocks, so it reads that way when it can, without
// an allocation per event.
type viewSource interface {
	ReadFromView(ctx context.Context, from uint64, fn func(*event.Event) error) error
}

// Aggregates is the engine's read side used for the windows and funnels
// export; *engine.Engine implements it. The exporter calls it from one
// goroutine at a time and keeps nothing it returns.
type Aggregates interface {
	Campaigns(source string) ([]engine.CampaignInfo, error)
	Funnel(engine.CampaignRef, engine.Range) (*engine.Funnel, error)
	Timeseries(ref engine.CampaignRef, window time.Duration, r engine.Range) ([]engine.Point, error)
}

var (
	_ Source     = (*storage.Log)(nil)
	_ viewSource = (*storage.Log)(nil)
	_ Aggregates = (*engine.Engine)(nil)
)

// Checkpoint names in the source log.
const (
	// CheckpointName holds the last exported sequence: every event up to it
	// is in exactly one recorded events file.
	CheckpointName = "export"
	// IntentName holds the end of the range the current (possibly
	// interrupted) step exports. When it is above CheckpointName, the range
	// (checkpoint, intent] is pending and is redone, with the same
	// boundaries, before anything else.
	IntentName = "export.intent"
)

// ErrClosed is returned by Export on a closed Exporter.
var ErrClosed = errors.New("export: exporter is closed")

// Config configures an Exporter. The zero value of each field but Dir means
// its default.
type Config struct {
	// Dir is the export directory. Required; created if missing.
	Dir string
	// Classify fills BounceClass and BounceReason of bounce events
	// (soft_bounce, hard_bounce, undelivered) before they are written. Nil
	// leaves them empty. It must be safe to call from one goroutine while
	// others run other code, and must not retain the event.
	Classify func(*event.Event)
	// Logger; nil discards.
	Logger *slog.Logger
	// ChunkEvents bounds the events of one export step. A run over more
	// events is done in several steps, each with its own intent and
	// checkpoint, so it writes one file per hour partition per step. A run
	// holds at most two steps in memory (the next one is read while the
	// current one is written), about 300 bytes an event each. Default
	// 250,000 (about 150 MiB at most).
	ChunkEvents int
	// RowGroupRows is the most rows in one Parquet row group. Default
	// 131,072: about 4 MiB of compressed data per row group at the
	// typical 30 bytes per row, large enough for long sequential column
	// chunks and useful min/max statistics, small enough that DuckDB and
	// Spark (which parallelise per row group) split an hour of a busy
	// account across cores, and that a writer buffers at most one row group
	// (tens of MiB) in memory.
	RowGroupRows int
	// ZstdLevel is the zstd compression level of every column. Default
	// zstd.SpeedFastest: with literals always entropy coded (see zstdCodec)
	// it takes about half the CPU of zstd.SpeedDefault (about zstd level 3)
	// for about 10% more bytes (35 instead of 32 bytes a row on
	// BenchmarkExport's events).
	ZstdLevel zstd.Level
	// Workers bounds the encoding concurrency: how many partition files
	// are written in parallel, and within a file how many row groups, and
	// within a row group how many column chunks, are encoded at once. One
	// more goroutine reads the log meanwhile. Default GOMAXPROCS (serve's
	// --export-workers can lower it, to leave CPU to ingest).
	Workers int
	// Window is the window of the exported time series. Default 1h, the
	// events' partition size.
	Window time.Duration
}

// DefaultConfig returns the defaults for dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:          dir,
		ChunkEvents:  250_000,
		RowGroupRows: 131_072,
		ZstdLevel:    zstd.SpeedFastest,
		Workers:      runtime.GOMAXPROCS(0),
		Window:       time.Hour,
	}
}

func (c *Config) fill() {
	d := DefaultConfig(c.Dir)
	if c.ChunkEvents == 0 {
		c.ChunkEvents = d.ChunkEvents
	}
	if c.RowGroupRows == 0 {
		c.RowGroupRows = d.RowGroupRows
	}
	if c.ZstdLevel == 0 {
		c.ZstdLevel = d.ZstdLevel
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("export config: Dir is required")
	case c.ChunkEvents < 0, c.RowGroupRows < 0, c.Workers < 0:
		return errors.New("export config: sizes must not be negative")
	case c.Window < 0 || c.Window%time.Minute != 0:
		return errors.New("export config: Window must be a whole number of minutes")
	}
	return nil
}

// Run is what one Export wrote. FromSeq and ToSeq are the range of events
// exported (both zero when there was nothing new); Files lists every file
// written, aggregate snapshots included.
type Run struct {
	FromSeq  uint64        `json:"from_seq"`
	ToSeq    uint64        `json:"to_seq"`
	Files    []File        `json:"files"`
	Rows     int64         `json:"rows"`
	Duration time.Duration `json:"duration_ns"`
}

// Exporter writes the event log (and optionally the engine's aggregates) to
// Parquet files under Config.Dir. Its methods are safe for concurrent use;
// exports are serialised.
type Exporter struct {
	cfg  Config
	src  Source
	agg  Aggregates
	log  *slog.Logger
	opts []parquet.WriterOption // common writer options

	mu     sync.Mutex // serialises exports and guards the fields below
	man    *manifest
	closed bool
	dirs   map[string]bool // partition directories known to exist

	// partWriters holds idle partWriters between partitions,
	// steps and runs; the GC frees them when exports stop.
	partWriters sync.Pool

	// afterStep, when set by tests, runs after a step's files are renamed
	// and recorded and before the checkpoint moves; an error aborts the run
	// there, as a crash would.
	afterStep func(from, to uint64) error
}

// Log attribute keys.
const (
	keyFrom  = "from_seq"
	keyTo    = "to_seq"
	keyRows  = "rows"
	keyFiles = "files"
	keyErr   = "err"
	keyDur   = "duration"
)

// New opens the exporter: it creates Dir, removes the temp files an
// interrupted run left behind, loads the manifest and, when the log's intent
// checkpoint shows an unfinished step, redoes that step with the same
// boundaries so that the export directory again holds every exported event
// exactly once.
func New(cfg Config, src Source, agg Aggregates) (*Exporter, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("export: nil source")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create export dir %q: %w", cfg.Dir, err)
	}
	n, err := removeTemps(cfg.Dir)
	if err != nil {
		return nil, err
	}
	man, err := openManifest(filepath.Join(cfg.Dir, ManifestName))
	if err != nil {
		return nil, err
	}
	if err := syncDir(cfg.Dir); err != nil {
		man.close()
		return nil, err
	}
	x := &Exporter{
		cfg: cfg, src: src, agg: agg, log: cfg.Logger, man: man,
		dirs: map[string]bool{},
	}
	codec := newZstdCodec(cfg.ZstdLevel)
	var eopt []parquet.WriterOption
	x.opts, eopt = writerOptions(cfg, codec)
	tmpl, err := newEventTemplate(eopt)
	if err != nil {
		man.close()
		return nil, err
	}
	x.partWriters.New = func() any { return newPartWriter(newFileWriter(tmpl, codec, cfg.RowGroupRows, cfg.Workers)) }
	if n > 0 {
		x.log.Info("removed stale export temp files", "count", n)
	}
	cp, intent, err := x.checkpoints()
	if err != nil {
		man.close()
		return nil, err
	}
	if intent > cp {
		x.log.Info("finishing interrupted export", keyFrom, cp+1, keyTo, intent)
		if err := x.runSteps(context.Background(), cp, intent, intent, &Run{}); err != nil {
			man.close()
			return nil, fmt.Errorf("finish interrupted export of seq %d-%d: %w", cp+1, intent, err)
		}
	}
	return x, nil
}

// writerOptions returns the Parquet writer options of every file and those
// of the events files (which add the sorting columns).
func writerOptions(cfg Config, codec compress.Codec) (common, events []parquet.WriterOption) {
	common = []parquet.WriterOption{
		parquet.Compression(codec),
		// Version 1 data pages: every Spark and Hive reader takes them.
		parquet.DataPageVersion(1),
		parquet.MaxRowsPerRowGroup(int64(cfg.RowGroupRows)),
		parquet.PageBufferSize(1 << 20),
		// Min/max statistics go in the column chunk metadata and the
		// column index (one entry per page), where readers look for them.
		// Copies in every data page header would compute each page's
		// bounds a second time, about 5% of the export's CPU.
		parquet.DataPageStatistics(false),
		parquet.KeyValueMetadata(SchemaVersionKey, strconv.Itoa(SchemaVersion)),
	}
	events = append(slices.Clip(common), parquet.SortingWriterConfig(parquet.SortingColumns(
		parquet.Ascending("campaign"), parquet.Ascending("event_time"), parquet.Ascending("seq"))))
	return common, events
}

// Close releases the manifest. It is idempotent; an Export in progress
// finishes first.
func (x *Exporter) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	x.closed = true
	return x.man.close()
}

// Files returns the manifest: every file currently in the export, in the
// order written.
func (x *Exporter) Files() ([]File, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil, ErrClosed
	}
	return x.man.list(), nil
}

func (x *Exporter) checkpoints() (cp, intent uint64, err error) {
	if cp, err = x.src.Checkpoint(CheckpointName); err != nil {
		return 0, 0, fmt.Errorf("read export checkpoint: %w", err)
	}
	if intent, err = x.src.Checkpoint(IntentName); err != nil {
		return 0, 0, fmt.Errorf("read export intent: %w", err)
	}
	return cp, intent, nil
}

// Export exports every event appended before it started and not yet
// exported, then (with Aggregates) a snapshot of the windows and funnels.
// Concurrent calls are serialised. On error, or when ctx ends, the files
// already renamed into place stay and the next Export (or New after a
// crash) redoes the unfinished step with the same file names; no temp file
// is left behind.
func (x *Exporter) Export(ctx context.Context) (Run, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	start := time.Now()
	run := Run{Files: []File{}}
	if x.closed {
		return run, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return run, context.Cause(ctx)
	}
	end := x.src.LastSeq()
	cp, intent, err := x.checkpoints()
	if err != nil {
		return run, err
	}
	if err := x.runSteps(ctx, cp, intent, end, &run); err != nil {
		return run, err
	}
	if x.agg != nil {
		cp, err := x.src.Checkpoint(CheckpointName)
		if err != nil {
			return run, fmt.Errorf("read export checkpoint: %w", err)
		}
		if cp > 0 && !x.haveSnapshot(cp) {
			files, err := x.exportAggregates(ctx, cp)
			if err != nil {
				return run, err
			}
			run.Files = append(run.Files, files...)
		}
	}
	run.Duration = time.Since(start)
	if len(run.Files) > 0 {
		x.log.Info("export done", keyFrom, run.FromSeq, keyTo, run.ToSeq, keyRows, run.Rows,
			keyFiles, len(run.Files), keyDur, run.Duration)
	}
	return run, nil
}

// runSteps exports the events after the checkpoint cp up to end, in steps
// (see the package documentation): first the pending step (cp, intent] when
// intent > cp, then steps of at most Config.ChunkEvents. One goroutine
// reads the next step from the log while the current one is written, so a
// run holds at most two steps in memory. Each step's intent is recorded
// before any of its files is written; reading ahead writes nothing.
func (x *Exporter) runSteps(ctx context.Context, cp, intent, end uint64, run *Run) error {
	type stepRange struct {
		from, to uint64
		pending  bool // the intent is already recorded
	}
	var ranges []stepRange
	if intent > cp {
		ranges = append(ranges, stepRange{cp + 1, intent, true})
		cp = intent
	}
	for cp < end {
		to := min(end, cp+uint64(x.cfg.ChunkEvents))
		ranges = append(ranges, stepRange{cp + 1, to, false})
		cp = to
	}
	if len(ranges) == 0 {
		return nil
	}

	rctx, cancel := context.WithCancel(ctx)
	full := make(chan *stepBuf)
	free := make(chan *stepBuf, 2)
	free <- new(stepBuf)
	free <- new(stepBuf)
	go func() {
		defer close(full)
		for _, r := range ranges {
			var s *stepBuf
			select {
			case s = <-free:
			case <-rctx.Done():
				return
			}
			s.err = x.readStep(rctx, r.from, r.to, s)
			select {
			case full <- s:
			case <-rctx.Done():
				return
			}
			if s.err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range full { // wait for the reader to stop
		}
	}()

	for _, r := range ranges {
		s, ok := <-full
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if !ok {
			return errors.New("export: log reader stopped early")
		}
		if s.err != nil {
			return s.err
		}
		if !r.pending {
			// Record the step's range before writing anything: a restart
			// redoes exactly this range, so its file names are the same.
			if err := x.src.SetCheckpoint(IntentName, r.to); err != nil {
				return fmt.Errorf("record export intent: %w", err)
			}
		}
		if err := x.step(ctx, s, run); err != nil {
			return err
		}
		free <- s
	}
	return nil
}

// step writes the step in s (the recorded intent), records the files in the
// manifest and then advances the checkpoint to its end.
func (x *Exporter) step(ctx context.Context, s *stepBuf, run *Run) error {
	files, err := x.writeParts(ctx, s)
	if err != nil {
		return err
	}
	recs := make([]manifestRecord, len(files))
	for i, f := range files {
		recs[i] = manifestRecord{File: f}
	}
	if err := x.man.append(recs...); err != nil {
		return err
	}
	if x.afterStep != nil {
		if err := x.afterStep(s.from, s.to); err != nil {
			return err
		}
	}
	if err := x.src.SetCheckpoint(CheckpointName, s.to); err != nil {
		return fmt.Errorf("advance export checkpoint to %d: %w", s.to, err)
	}
	if run.FromSeq == 0 {
		run.FromSeq = s.from
	}
	run.ToSeq = s.to
	run.Rows += int64(s.to - s.from + 1)
	run.Files = append(run.Files, files...)
	return nil
}

// haveSnapshot reports whether the manifest holds both aggregate snapshots
// as of seq.
func (x *Exporter) haveSnapshot(seq uint64) bool {
	var w, f bool
	for _, fl := range x.man.files {
		if fl.LastSeq == seq {
			w = w || fl.Kind == KindWindows
			f = f || fl.Kind == KindFunnels
		}
	}
	return w && f
}

// exportAggregates writes the engine's windows and funnels of every
// campaign as windows/windows-<seq>.parquet and funnels/funnels-<seq>.parquet,
// records them, and then removes the snapshots they supersede. The engine
// follows the log on its own, so a snapshot reflects the engine's state when
// it was taken, which may be slightly behind or ahead of seq.
func (x *Exporter) exportAggregates(ctx context.Context, seq uint64) ([]File, error) {
	camps, err := x.agg.Campaigns("")
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	var (
		frows []FunnelRow
		wrows []WindowRow
	)
	for _, c := range camps {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		ref := engine.CampaignRef{Source: c.Source, Account: c.Account, Campaign: c.Campaign}
		fn, err := x.agg.Funnel(ref, engine.Range{})
		if err != nil {
			return nil, fmt.Errorf("funnel of campaign %q: %w", c.Campaign, err)
		}
		add := func(kind string, names []string, counts map[string]engine.Count) {
			for _, name := range names {
				n := counts[name]
				frows = append(frows, FunnelRow{
					Source: c.Source, Account: c.Account, Campaign: c.Campaign, Kind: kind, Name: name,
					Recipients: n.Recipients, Events: n.Events,
					FirstEvent: c.FirstEvent.UnixMicro(), LastEvent: c.LastEvent.UnixMicro(),
					AsOfSeq: int64(seq), SchemaVersion: SchemaVersion,
				})
			}
		}
		add("stage", engine.StageNames, fn.Stages)
		add("outcome", engine.OutcomeNames, fn.Outcomes)
		pts, err := x.agg.Timeseries(ref, x.cfg.Window, engine.Range{})
		if err != nil {
			return nil, fmt.Errorf("time series of campaign %q: %w", c.Campaign, err)
		}
		for _, p := range pts {
			types := make([]string, 0, len(p.Counts))
			for t := range p.Counts {
				types = append(types, t)
			}
			sort.Strings(types)
			for _, t := range types {
				wrows = append(wrows, WindowRow{
					Source: c.Source, Account: c.Account, Campaign: c.Campaign,
					WindowStart: p.Start.UnixMicro(), WindowSeconds: int64(x.cfg.Window / time.Second),
					Type: t, Events: p.Counts[t], AsOfSeq: int64(seq), SchemaVersion: SchemaVersion,
				})
			}
		}
	}
	var files []File
	wf, err := writeSnapshot(x, KindWindows, seq, wrows)
	if err != nil {
		return nil, err
	}
	files = append(files, wf)
	ff, err := writeSnapshot(x, KindFunnels, seq, frows)
	if err != nil {
		return nil, err
	}
	files = append(files, ff)
	recs := []manifestRecord{{File: wf}, {File: ff}}
	if err := x.man.append(recs...); err != nil {
		return nil, err
	}
	// The new snapshots are recorded: drop the ones they supersede.
	var gone []manifestRecord
	for _, f := range x.man.files {
		if (f.Kind == KindWindows || f.Kind == KindFunnels) && f.LastSeq != seq {
			if err := os.Remove(filepath.Join(x.cfg.Dir, filepath.FromSlash(f.Path))); err != nil && !os.IsNotExist(err) {
				return files, fmt.Errorf("remove superseded snapshot: %w", err)
			}
			gone = append(gone, manifestRecord{File: f, Removed: true})
		}
	}
	if len(gone) > 0 {
		if err := x.man.append(gone...); err != nil {
			return files, err
		}
	}
	return files, nil
}

func writeSnapshot[T any](x *Exporter, kind string, seq uint64, rows []T) (File, error) {
	dir := filepath.Join(x.cfg.Dir, kind)
	if err := x.mkdir(dir); err != nil {
		return File{}, err
	}
	name := fmt.Sprintf("%s-%d.parquet", kind, seq)
	size, err := writeFile(dir, name, rows, x.opts)
	if err != nil {
		return File{}, err
	}
	return File{
		Path: kind + "/" + name, Kind: kind, Rows: int64(len(rows)),
		FirstSeq: 1, LastSeq: seq, Bytes: size, Created: time.Now().UTC(),
	}, nil
}

// RunEvery exports every interval until ctx ends, then returns nil. A run in
// progress when ctx ends is abandoned cleanly (its temp file removed; the
// next start redoes its step). A failed run is logged and retried at the
// next tick, so a transient error (a full disk) does not stop the server.
// every <= 0 turns the periodic export off: RunEvery then only waits for
// ctx.
func (x *Exporter) RunEvery(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := x.Export(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			x.log.Error("periodic export failed; retrying at the next tick", keyErr, err)
		}
	}
}

package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Sentinel errors callers branch on.
var (
	// ErrClosed is returned by operations on a closed Log.
	ErrClosed = errors.New("storage: log is closed")
	// ErrLocked is returned by Open when another process (normally a running
	// mailfunnel serve) holds the data directory.
	ErrLocked = errors.New("storage: data directory is in use by another process")
	// ErrOverloaded is returned by Append when the commit queue stays full
	// past Config.QueueTimeout; ingest answers 503 with Retry-After.
	ErrOverloaded = errors.New("storage: commit queue is full")
	// ErrTooLarge is returned by Append for a batch above Config.MaxBatchEvents.
	ErrTooLarge = errors.New("storage: batch too large")
)

const (
	prefixLog        = 'l'
	prefixDedupe     = 'd'
	prefixDeadLetter = 'x'
	prefixCheckpoint = 'c'
)

// Config configures a Log. The zero value of each field means its default.
type Config struct {
	// Dir is the Badger directory. Required.
	Dir string
	// DedupeHorizon is how long an event's hash is remembered for
	// deduplication. Default 7 days.
	DedupeHorizon time.Duration
	// MaxGroupEvents bounds the events merged into one group commit.
	// Default 20,000; one request larger than this still commits alone.
	MaxGroupEvents int
	// MaxBatchEvents bounds the events of a single Append. Default 200,000.
	MaxBatchEvents int
	// QueueLen is the number of Append calls that may wait for the
	// committer. Default 4096.
	QueueLen int
	// QueueTimeout is how long Append waits for a place in a full queue
	// before returning ErrOverloaded. Default 2s.
	QueueTimeout time.Duration
	// BlockCacheMB is Badger's block cache size in MiB. Default 64.
	BlockCacheMB int
	// DedupeFilterMB bounds the memory of the dedupe filters: Bloom
	// filters of the hashes stored within the horizon that spare a new
	// event its dedupe read (dedupefilter.go). Default 64 (about 53M
	// events per horizon at their sized false-positive rate; more only
	// raises it). Negative turns them off.
	DedupeFilterMB int
	// DedupeTailKeys is how many hashes of the newest events the dedupe
	// index keeps in memory (about 40 bytes each) before it writes them
	// as a run; after a crash, Open reads up to that many events again.
	// Default 1,048,576.
	DedupeTailKeys int
	// Logger receives Badger's messages and the log's own; nil discards.
	Logger *slog.Logger
	// NoSync skips fsync after commits. Only for benchmarks that measure
	// everything but the disk; never in production.
	NoSync bool
}

// DefaultConfig returns the defaults for dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:            dir,
		DedupeHorizon:  7 * 24 * time.Hour,
		MaxGroupEvents: 20000,
		MaxBatchEvents: 200000,
		QueueLen:       4096,
		QueueTimeout:   2 * time.Second,
		BlockCacheMB:   64,
		DedupeFilterMB: 64,
	}
}

func (c *Config) fill() {
	d := DefaultConfig(c.Dir)
	if c.DedupeHorizon == 0 {
		c.DedupeHorizon = d.DedupeHorizon
	}
	if c.MaxGroupEvents == 0 {
		c.MaxGroupEvents = d.MaxGroupEvents
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = d.MaxBatchEvents
	}
	if c.QueueLen == 0 {
		c.QueueLen = d.QueueLen
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = d.QueueTimeout
	}
	if c.BlockCacheMB == 0 {
		c.BlockCacheMB = d.BlockCacheMB
	}
	if c.DedupeFilterMB == 0 {
		c.DedupeFilterMB = d.DedupeFilterMB
	}
	if c.DedupeTailKeys == 0 {
		c.DedupeTailKeys = tailKeys
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("storage config: Dir is required")
	case c.DedupeHorizon < 0:
		return errors.New("storage config: DedupeHorizon must not be negative")
	case c.MaxGroupEvents < 0, c.MaxBatchEvents < 0, c.QueueLen < 0, c.BlockCacheMB < 0, c.DedupeTailKeys < 0:
		return errors.New("storage config: sizes must not be negative")
	}
	return nil
}

// Log is the durable, deduplicating event log. It is safe for concurrent
// use. Open it with Open and release it with Close.
type Log struct {
	cfg Config
	db  *badger.DB
	log *slog.Logger

	reqs   chan *appendReq
	stop   chan struct{}
	exited chan struct{} // closed when the committer has answered its last request
	wg     sync.WaitGroup

	lastSeq atomic.Uint64 // newest durable sequence: what readers see
	// durable is lastSeq as far as an fsync succeeded: the dedupe index
	// writes a run only of events up to it (lastSeq moves on after a
	// failed sync too, see syncLoop).
	durable   atomic.Uint64
	tailBuilt bool           // the dedupe index's tail is rebuilt (initTail); owned by commitLoop
	nextSeq   uint64         // next sequence to assign; owned by commitLoop
	spare     spareTxns      // owned by commitLoop
	filters   *dedupeFilters // owned by commitLoop
	index     *dedupeIndex   // its tail owned by commitLoop
	persist   chan chan<- error
	trimmed   atomic.Uint64 // last sequence removed by Trim
	trimMu    sync.Mutex
	changed   atomic.Pointer[chan struct{}]

	deadMu     sync.Mutex
	nextDeadID uint64

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// Open opens (creating if needed) the log in cfg.Dir and starts its
// committer. It returns an error wrapping ErrLocked when another process
// holds the directory.
func Open(cfg Config) (*Log, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// After a crash, Badger replays its WAL from pages the dead process
	// may never have synced, and later syncs cover only the files being
	// written: a dedupe run must not record what a power loss could still
	// undo. (Before Badger opens: it flushes and deletes WAL files.)
	if err := syncBadgerFiles(cfg.Dir); err != nil {
		return nil, err
	}
	db, err := OpenBadger(cfg.Dir, cfg.BlockCacheMB, cfg.Logger)
	if err != nil {
		return nil, err
	}
	l := &Log{
		cfg:     cfg,
		db:      db,
		log:     cfg.Logger,
		reqs:    make(chan *appendReq, cfg.QueueLen),
		stop:    make(chan struct{}),
		exited:  make(chan struct{}),
		persist: make(chan chan<- error),
	}
	l.filters = newDedupeFilters(cfg.DedupeFilterMB, l.stop, &l.wg, l.log.Info)
	ch := make(chan struct{})
	l.changed.Store(&ch)
	if err := l.recover(); err != nil {
		_ = db.Close()
		return nil, err
	}
	l.durable.Store(l.lastSeq.Load())
	if err := l.openIndex(); err != nil {
		_ = db.Close()
		return nil, err
	}
	go l.index.writer()
	go l.index.maintainer()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(l.exited)
		l.commitLoop()
	}()
	return l, nil
}

// OpenBadger opens a Badger database with the options mailfunnel uses for
// its single-writer stores: no conflict detection (one goroutine writes),
// no fsync per commit (callers sync explicitly when they must be durable),
// and caches sized for a small machine. The engine opens its state store
// with OpenBadgerOptions. The error wraps ErrLocked when the directory is
// held.
//
// The log's tables are Snappy-compressed: zstd spent CPU for little on
// what they hold (the dedupe keys, random 128-bit hashes, when they were
// Badger keys; now the entry keys and the entries under 4 KiB; larger
// entries, most of the events, are in the value log, which Badger does
// not compress).
func OpenBadger(dir string, blockCacheMB int, logger *slog.Logger) (*badger.DB, error) {
	return OpenBadgerOptions(dir, BadgerOptions{BlockCacheMB: blockCacheMB, MemTableMB: 64, Snappy: true}, logger)
}

// BadgerOptions are the few Badger settings that differ between
// mailfunnel's stores.
type BadgerOptions struct {
	BlockCacheMB int
	// MemTableMB is the memtable size. It also bounds a transaction (15%
	// of it), which the engine's state store needs large: a smaller one
	// ends its transactions sooner, so hot counters are rewritten more
	// often, and that costs more than the smaller skiplist saves
	// (benchmarks/RESULTS.md, stop 11).
	MemTableMB int
	// Snappy selects Snappy instead of zstd for SSTs: cheaper CPU for a
	// store that is rewritten often and can be rebuilt.
	Snappy bool
}

// OpenBadgerOptions is OpenBadger with the settings of o.
func OpenBadgerOptions(dir string, o BadgerOptions, logger *slog.Logger) (*badger.DB, error) {
	blockCacheMB := o.BlockCacheMB
	comp := options.ZSTD
	if o.Snappy {
		comp = options.Snappy
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{logger}).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithNumCompactors(2).
		WithValueThreshold(4 << 10).
		WithBlockCacheSize(int64(blockCacheMB) << 20).
		WithIndexCacheSize(32 << 20).
		WithCompression(comp).
		WithMemTableSize(int64(o.MemTableMB) << 20).
		// Each memtable is an arena allocated whole: Badger's default of 5
		// lets one database hold 5 x MemTableMB while flushes lag. Three
		// keep a flush in flight without doubling the footprint.
		WithNumMemtables(3).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("open badger %q: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open badger %q: %w", dir, err)
	}
	return db, nil
}

// recover finds the last sequence and dead-letter id, so that numbering
// continues after a restart.
func (l *Log) recover() error {
	return l.db.View(func(txn *badger.Txn) error {
		trimmed, err := loadTrimmed(txn)
		if err != nil {
			return err
		}
		l.trimmed.Store(trimmed)
		l.lastSeq.Store(trimmed)
		last, err := lastKey(txn, prefixLog)
		if err != nil {
			return err
		}
		if last != nil {
			var n int
			if err := last.Value(func(v []byte) error {
				c, k := binary.Uvarint(v)
				if k <= 0 {
					return fmt.Errorf("log entry %x: %w", last.Key(), errCorruptEntry)
				}
				n = int(c)
				return nil
			}); err != nil {
				return err
			}
			first := binary.BigEndian.Uint64(last.Key()[1:])
			l.lastSeq.Store(first + uint64(n) - 1)
		}
		dl, err := lastKey(txn, prefixDeadLetter)
		if err != nil {
			return err
		}
		if dl != nil {
			l.nextDeadID = binary.BigEndian.Uint64(dl.Key()[1:]) + 1
		} else {
			l.nextDeadID = 1
		}
		return nil
	})
}

var errCorruptEntry = errors.New("corrupt log entry")

// lastKey returns the item with the greatest key of a one-byte prefix.
func lastKey(txn *badger.Txn, prefix byte) (*badger.Item, error) {
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: []byte{prefix}})
	defer it.Close()
	it.Seek([]byte{prefix, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if !it.ValidForPrefix([]byte{prefix}) {
		return nil, nil
	}
	return it.Item(), nil
}

// LastSeq is the sequence of the newest durable event, 0 for an empty log.
func (l *Log) LastSeq() uint64 { return l.lastSeq.Load() }

// Changed returns a channel that is closed after the next commit that adds
// events. Take a new channel after each wake-up.
func (l *Log) Changed() <-chan struct{} { return *l.changed.Load() }

func (l *Log) notify() {
	ch := make(chan struct{})
	old := l.changed.Swap(&ch)
	close(*old)
}

// Close stops the committer after the queued appends are committed, then
// closes Badger. It is idempotent.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		l.wg.Wait()
		l.index.close()
		l.closeErr = l.db.Close()
	})
	return l.closeErr
}

// RunGC runs Badger's value-log garbage collection until it finds nothing
// to rewrite. Call it periodically; it is safe concurrently with appends.
func (l *Log) RunGC() error { return RunValueLogGC(l.db) }

// RunValueLogGC rewrites value-log files with at least half garbage, until
// none is left.
func RunValueLogGC(db *badger.DB) error {
	for {
		err := db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Settle waits for the compactions Badger has pending and then compacts
// the whole LSM tree into one level, so that no background table building
// is left from what was written before. It is for benchmarks and
// maintenance after a bulk load; appends may continue meanwhile.
func (l *Log) Settle() error { return l.db.Flatten(2) }

// Size reports Badger's LSM and value-log sizes in bytes.
func (l *Log) Size() (lsm, vlog int64) { return l.db.Size() }

func seqKey(prefix byte, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// badgerLogger routes Badger's printf-style logging into slog. Badger is
// chatty at INFO on open and compaction, so its INFO goes to DEBUG.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger", "msg", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger", "msg", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug("badger", "msg", strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug("badger", "msg", strings.TrimSpace(fmt.Sprintf(f, a...)))
}

// ctxErr is a small helper so that every blocking path reports the
// context's error uniformly.
func ctxErr(ctx context.Context) error { return context.Cause(ctx) }

// syncBadgerFiles fsyncs the write-ahead and value-log files in dir (a
// missing dir is a new log).
func syncBadgerFiles(dir string) error {
	names, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sync log files: %w", err)
	}
	for _, de := range names {
		if n := de.Name(); !de.IsDir() && (strings.HasSuffix(n, ".mem") || strings.HasSuffix(n, ".vlog")) {
			f, err := os.Open(filepath.Join(dir, n))
			if errors.Is(err, fs.ErrNotExist) {
				continue // a process still holding the directory removed it
			}
			if err != nil {
				return fmt.Errorf("sync log files: %w", err)
			}
			err = f.Sync()
			if err := errors.Join(err, f.Close()); err != nil {
				return fmt.Errorf("sync log files: %w", err)
			}
		}
	}
	return nil
}

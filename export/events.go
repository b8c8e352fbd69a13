package export

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sync/errgroup"

	"github.com/mailfunnel/mailfunnel/event"
)

// errStop ends a ReadFrom scan at the step's end.
var errStop = errors.New("export: end of step")

// readStep reads the events from..to into s, replacing what it held.
func (x *Exporter) readStep(ctx context.Context, from, to uint64, s *stepBuf) error {
	s.reset(from, to)
	next := from
	read := x.src.ReadFrom
	if v, ok := x.src.(viewSource); ok {
		read = v.ReadFromView
	}
	err := read(ctx, from, func(e *event.Event) error {
		if e.Seq > to {
			return errStop
		}
		if e.Seq != next {
			return fmt.Errorf("log gap: got seq %d, want %d", e.Seq, next)
		}
		next++
		if x.cfg.Classify != nil && e.Type.IsBounce() {
			x.cfg.Classify(e)
		}
		s.add(e)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("read log from seq %d: %w", from, err)
	}
	if next != to+1 {
		return fmt.Errorf("read log seq %d-%d: log ended at %d", from, to, next-1)
	}
	slices.SortFunc(s.parts, func(a, b *part) int { return cmp.Compare(a.hour, b.hour) })
	return nil
}

// writeParts writes one file per partition of s. Config.Workers files are
// encoded at a time, each with a pooled partWriter; twice as many
// goroutines take partitions, so that one file's fsync, rename and
// directory fsync (a few milliseconds of waiting on the disk) overlap
// another file's encoding.
func (x *Exporter) writeParts(ctx context.Context, s *stepBuf) ([]File, error) {
	dirs := make([]string, len(s.parts))
	for i, p := range s.parts {
		dirs[i] = filepath.Join(x.cfg.Dir, partitionDir(p.hour))
		if err := x.mkdir(dirs[i]); err != nil {
			return nil, err
		}
	}
	files := make([]File, len(s.parts))
	encoding := make(chan struct{}, x.cfg.Workers)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(2*x.cfg.Workers, len(s.parts)) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(s.parts) {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return context.Cause(gctx)
				}
				f, err := x.writePartition(encoding, dirs[i], s.parts[i])
				if err != nil {
					return err
				}
				files[i] = f
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return files, nil
}

// partitionDir is the Hive-style directory of an hour (Unix hours).
func partitionDir(h int64) string {
	t := time.Unix(h*3600, 0).UTC()
	return fmt.Sprintf("events/date=%s/hour=%02d", t.Format("2006-01-02"), t.Hour())
}

func (x *Exporter) mkdir(dir string) error {
	if x.dirs[dir] {
		return nil
	}
	if err := mkdirAll(x.cfg.Dir, dir); err != nil {
		return err
	}
	x.dirs[dir] = true
	return nil
}

// partWriter is one worker's reusable state for writing partition files:
// the file encoder (its buffers and dictionaries are allocated once rather
// than per file) and the sort keys.
type partWriter struct {
	fw    *fileWriter
	keys  []sortKey
	ids   map[string]uint32
	names []string
	ranks []uint32
}

func newPartWriter(fw *fileWriter) *partWriter {
	return &partWriter{fw: fw, ids: map[string]uint32{}}
}

// writePartition writes the rows of p, sorted by campaign, event time and
// seq, as dir/part-<first seq>-<last seq>.parquet. It holds a place in
// encoding while it sorts and encodes.
func (x *Exporter) writePartition(encoding chan struct{}, dir string, p *part) (File, error) {
	first, last := p.firstSeq(), p.lastSeq() // rows are added in seq order
	name := fmt.Sprintf("part-%d-%d.parquet", first, last)
	size, err := writeAtomic(dir, name, func(f io.Writer) error {
		encoding <- struct{}{}
		pw := x.partWriters.Get().(*partWriter)
		defer func() {
			x.partWriters.Put(pw)
			<-encoding
		}()
		return pw.write(f, p)
	})
	if err != nil {
		return File{}, err
	}
	rel, _ := filepath.Rel(x.cfg.Dir, filepath.Join(dir, name))
	return File{
		Path: filepath.ToSlash(rel), Kind: KindEvents, Rows: int64(p.n),
		FirstSeq: uint64(first), LastSeq: uint64(last), Bytes: size, Created: time.Now().UTC(),
	}, nil
}

// write writes the rows of p to f as one Parquet file, sorted.
func (pw *partWriter) write(f io.Writer, p *part) error {
	p.seal()
	return pw.fw.write(f, p, pw.sort(p))
}

// sortKey orders a row within its partition: k holds the rank of its
// campaign among the partition's campaigns (high 32 bits) and its event
// time as microseconds into the hour (low 32 bits: an hour is 3.6e9 µs,
// below 2^32); i, its position in the partition (block<<blockShift | row),
// which grows with seq, breaks ties.
type sortKey struct {
	k uint64
	i uint32
}

func compareKeys(a, b sortKey) int {
	if c := cmp.Compare(a.k, b.k); c != 0 {
		return c
	}
	return cmp.Compare(a.i, b.i)
}

// sort returns the rows of p as keys ordered by (campaign, event_time,
// seq). Campaigns are ranked once per partition, so that the sort compares
// integers rather than strings.
func (pw *partWriter) sort(p *part) []sortKey {
	clear(pw.ids)
	pw.names = pw.names[:0]
	keys := slices.Grow(pw.keys[:0], p.n)
	for bi, b := range p.blocks {
		for j := range b.rows {
			c := b.str(j, fieldCampaign)
			id, ok := pw.ids[c]
			if !ok {
				id = uint32(len(pw.names))
				pw.ids[c] = id
				pw.names = append(pw.names, c)
			}
			keys = append(keys, sortKey{k: uint64(id), i: uint32(bi<<blockShift | j)})
		}
	}
	// ranks[id] is the position of campaign id in sorted order.
	order := make([]uint32, len(pw.names))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int { return cmp.Compare(pw.names[a], pw.names[b]) })
	pw.ranks = slices.Grow(pw.ranks[:0], len(order))[:len(order)]
	for r, id := range order {
		pw.ranks[id] = uint32(r)
	}
	start := p.hour * hourMicros
	sorted := true
	for j := range keys {
		k := &keys[j]
		k.k = uint64(pw.ranks[k.k])<<32 | uint64(p.eventTime(k.i)-start)
		if j > 0 && keys[j-1].k > k.k {
			sorted = false
		}
	}
	if !sorted {
		slices.SortFunc(keys, compareKeys)
	}
	pw.keys = keys
	return keys
}

const hourMicros = int64(time.Hour / time.Microsecond)

// hourOf is the Unix hour of a time in microseconds, rounded down.
func hourOf(us int64) int64 {
	h := us / hourMicros
	if us < 0 && us%hourMicros != 0 {
		h--
	}
	return h
}

// stepBuf holds one step's events until they are written, grouped by hour
// partition. An event is kept as a fixed-size record without pointers (the
// GC never scans it) plus its strings, copied into its block's byte arena:
// sorting and writing a partition then read only that partition's memory,
// in a few hundred KiB, instead of chasing each event's own allocation
// across the whole step. Blocks and partitions are reused by the next step
// read into the same stepBuf.
type stepBuf struct {
	from, to uint64
	err      error   // the read's error
	parts    []*part // by hour once read
	byHour   map[int64]*part
	// recent caches byHour by hour mod len: a step's events usually span
	// a few dozen hours in no order, and a map lookup per event cost
	// about 5% of reading the log.
	recent [64]*part
	spare  []*part
	free   []*block
}

func (s *stepBuf) reset(from, to uint64) {
	for _, p := range s.parts {
		for _, b := range p.blocks {
			b.reset()
			s.free = append(s.free, b)
		}
		clear(p.blocks)
		p.blocks, p.n = p.blocks[:0], 0
		s.spare = append(s.spare, p)
	}
	clear(s.parts)
	clear(s.recent[:])
	s.parts, s.err = s.parts[:0], nil
	s.from, s.to = from, to
	if s.byHour == nil {
		s.byHour = map[int64]*part{}
	}
	clear(s.byHour)
}

// add appends e to its partition.
func (s *stepBuf) add(e *event.Event) {
	us := e.EventTime.UnixMicro()
	h := hourOf(us)
	slot := &s.recent[uint64(h)%uint64(len(s.recent))]
	p := *slot
	if p == nil || p.hour != h {
		p = s.byHour[h]
		if p == nil {
			if n := len(s.spare); n > 0 {
				p, s.spare = s.spare[n-1], s.spare[:n-1]
			} else {
				p = new(part)
			}
			p.hour = h
			s.byHour[h] = p
			s.parts = append(s.parts, p)
		}
		*slot = p
	}
	var b *block
	if n := len(p.blocks); n > 0 && !p.blocks[n-1].full() {
		b = p.blocks[n-1]
	} else {
		if n := len(s.free); n > 0 {
			b, s.free = s.free[n-1], s.free[:n-1]
		} else {
			b = &block{rows: make([]crow, 0, blockRows), strs: make([]byte, 0, blockRows*blockRowStrs)}
		}
		p.blocks = append(p.blocks, b)
	}
	b.add(e, us)
	p.n++
}

// part is one hour partition of a step: its events in seq order, in
// blocks. A row's position is block<<blockShift | index in the block.
type part struct {
	hour   int64
	blocks []*block
	n      int
}

func (p *part) firstSeq() int64 { return p.blocks[0].rows[0].seq }

func (p *part) lastSeq() int64 {
	b := p.blocks[len(p.blocks)-1]
	return b.rows[len(b.rows)-1].seq
}

func (p *part) eventTime(i uint32) int64 {
	return p.blocks[i>>blockShift].rows[i&(blockRows-1)].eventTime
}

// seal makes the strings of every block readable; call it once all events
// are added. b.s aliases b.strs instead of copying it (the copy was a
// quarter of the export's allocations, 650 MB for 5M events): strs does
// not change until the block is reset for a later step, after this step's
// files are written, and the file writer keeps none of these strings past
// its file.
func (p *part) seal() {
	for _, b := range p.blocks {
		b.s = unsafe.String(unsafe.SliceData(b.strs), len(b.strs))
	}
}

// A block is full at blockRows events or maxBlockStrs bytes of strings.
// With the limit, a block's string offsets fit in 32 bits (a Badger value,
// hence an event, is far below 2 GiB).
const (
	blockShift   = 10
	blockRows    = 1 << blockShift
	maxBlockStrs = 1 << 30
	// blockRowStrs is the string bytes per event that a new block has room
	// for: a typical event has 150 to 250; a block grows past it if needed.
	blockRowStrs = 256
)

// block holds up to blockRows events of one partition.
type block struct {
	rows []crow
	strs []byte // the string fields of rows, back to back
	s    string // strs, once sealed
}

// crow is an event without its strings: the string fields are
// block.s[off+ends[f-1] : off+ends[f]] (ends[-1] = 0), in the order of
// the field constants.
type crow struct {
	seq          int64
	eventTime    int64 // µs
	receivedTime int64 // µs
	smtpCode     int32
	typ          event.Type
	off          uint32
	ends         [numFields]uint32
}

// The string fields of a crow.
const (
	fieldSource = iota
	fieldProvider
	fieldProviderEvent
	fieldAccount
	fieldCampaign
	fieldMessageID
	fieldRecipient
	fieldRecipientDomain
	fieldSMTPStatus
	fieldSMTPResponse
	fieldBounceClass
	fieldBounceReason
	fieldURL
	fieldSubject
	fieldSender
	fieldSendType
	numFields
)

func (b *block) reset() {
	clear(b.rows[:cap(b.rows)])
	b.rows, b.strs, b.s = b.rows[:0], b.strs[:0], ""
}

func (b *block) full() bool { return len(b.rows) == blockRows || len(b.strs) >= maxBlockStrs }

func (b *block) add(e *event.Event, eventTime int64) {
	r := crow{
		seq: int64(e.Seq), eventTime: eventTime, receivedTime: e.ReceivedTime.UnixMicro(),
		smtpCode: e.SMTPCode, typ: e.Type, off: uint32(len(b.strs)),
	}
	for f, v := range [numFields]string{
		fieldSource:          e.Source,
		fieldProvider:        e.Provider,
		fieldProviderEvent:   e.ProviderEvent,
		fieldAccount:         e.Account,
		fieldCampaign:        e.Campaign,
		fieldMessageID:       e.MessageID,
		fieldRecipient:       e.Recipient,
		fieldRecipientDomain: e.RecipientDomain,
		fieldSMTPStatus:      e.SMTPStatus,
		fieldSMTPResponse:    e.SMTPResponse,
		fieldBounceClass:     e.BounceClass,
		fieldBounceReason:    e.BounceReason,
		fieldURL:             e.URL,
		fieldSubject:         e.Subject,
		fieldSender:          e.Sender,
		fieldSendType:        e.SendType,
	} {
		b.strs = append(b.strs, v...)
		r.ends[f] = uint32(len(b.strs)) - r.off
	}
	b.rows = append(b.rows, r)
}

// str returns string field f of row j of a sealed block.
func (b *block) str(j, f int) string {
	r := &b.rows[j]
	lo := uint32(0)
	if f > 0 {
		lo = r.ends[f-1]
	}
	return b.s[r.off+lo : r.off+r.ends[f]]
}

package engine

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/zeebo/xxh3"
)

// spill holds a bulk catch-up's events sorted into buckets by recipient,
// in log order within each bucket, in one unlinked temporary file: the
// first pass writes it, and each recipient pass reads one bucket instead
// of the whole log (bulk.go). A bucket's events are appended to its
// buffer, which is written to the file as a chunk when full, so the file
// interleaves the buckets' chunks and a bucket is read back chunk by chunk
// at their offsets. Records never span chunks.
//
// The file is removed from its directory as soon as it is created, so a
// crash leaves nothing behind: the kernel frees its blocks when the
// process's descriptor goes.
type spill struct {
	f      *os.File
	off    int64
	bufs   [][]byte
	chunks [][]spillChunk // per bucket, in write order
	n      []int          // records per bucket
}

type spillChunk struct {
	off int64
	n   int32
}

// spillChunkBytes is the size of a bucket's buffer: large enough that a
// chunk is one cheap write and read, small enough that a thousand buckets
// buffer 32 MiB.
const spillChunkBytes = 32 << 10

// maxSpillBuckets bounds a spill's buckets, and so its buffers.
const maxSpillBuckets = 1024

func newSpill(dir string, buckets int) (*spill, error) {
	f, err := os.CreateTemp(dir, "mailfunnel-bulk-spill-*")
	if err != nil {
		return nil, fmt.Errorf("engine: create bulk spill file: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("engine: unlink bulk spill file: %w", err)
	}
	return &spill{f: f, bufs: make([][]byte, buckets), chunks: make([][]spillChunk, buckets), n: make([]int, buckets)}, nil
}

// add appends record rec to bucket b.
func (s *spill) add(b int, rec []byte) error {
	need := binary.MaxVarintLen32 + len(rec)
	if len(s.bufs[b])+need > spillChunkBytes && len(s.bufs[b]) > 0 {
		if err := s.flush(b); err != nil {
			return err
		}
	}
	if s.bufs[b] == nil {
		s.bufs[b] = make([]byte, 0, max(spillChunkBytes, need))
	}
	s.bufs[b] = binary.AppendUvarint(s.bufs[b], uint64(len(rec)))
	s.bufs[b] = append(s.bufs[b], rec...)
	s.n[b]++
	return nil
}

func (s *spill) flush(b int) error {
	buf := s.bufs[b]
	if len(buf) == 0 {
		return nil
	}
	if _, err := s.f.WriteAt(buf, s.off); err != nil {
		return fmt.Errorf("engine: write bulk spill: %w", err)
	}
	s.chunks[b] = append(s.chunks[b], spillChunk{off: s.off, n: int32(len(buf))})
	s.off += int64(len(buf))
	s.bufs[b] = buf[:0]
	return nil
}

// finish writes every buffer out and frees them: the file is complete.
func (s *spill) finish() error {
	for b := range s.bufs {
		if err := s.flush(b); err != nil {
			return err
		}
		s.bufs[b] = nil
	}
	return nil
}

// read calls fn with each record of buckets bs, each bucket's in the
// order added. With order (a record's key, such as an event's log
// sequence) the buckets are merged by it; without, they are read one
// after another. rec is valid until fn returns.
func (s *spill) read(bs []int, order func(rec []byte) uint64, fn func(rec []byte) error) error {
	var h spillHeap
	for _, b := range bs {
		c := &spillCursor{s: s, chunks: s.chunks[b]}
		if order == nil {
			if err := c.each(fn); err != nil {
				return err
			}
			continue
		}
		ok, err := c.next()
		if err != nil {
			return err
		}
		if ok {
			c.key = order(c.rec)
			h.cs = append(h.cs, c)
		}
	}
	heap.Init(&h)
	for len(h.cs) > 0 {
		c := h.cs[0]
		if err := fn(c.rec); err != nil {
			return err
		}
		ok, err := c.next()
		switch {
		case err != nil:
			return err
		case ok:
			c.key = order(c.rec)
			heap.Fix(&h, 0)
		default:
			heap.Pop(&h)
		}
	}
	return nil
}

// spillCursor reads one bucket's records.
type spillCursor struct {
	s      *spill
	chunks []spillChunk
	buf    []byte // the rest of the current chunk
	rbuf   []byte
	rec    []byte
	key    uint64 // the merge order's key of rec
}

// each calls fn with the cursor's remaining records.
func (c *spillCursor) each(fn func(rec []byte) error) error {
	for {
		ok, err := c.next()
		if !ok || err != nil {
			return err
		}
		if err := fn(c.rec); err != nil {
			return err
		}
	}
}

func (c *spillCursor) next() (bool, error) {
	if len(c.buf) == 0 {
		if len(c.chunks) == 0 {
			return false, nil
		}
		ch := c.chunks[0]
		c.chunks = c.chunks[1:]
		if cap(c.rbuf) < int(ch.n) {
			c.rbuf = make([]byte, ch.n)
		}
		c.buf = c.rbuf[:ch.n]
		if n, err := c.s.f.ReadAt(c.buf, ch.off); n < len(c.buf) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return false, fmt.Errorf("engine: read bulk spill: %w", err)
		}
	}
	l, k := binary.Uvarint(c.buf)
	if k <= 0 || uint64(len(c.buf)-k) < l {
		return false, errors.New("engine: corrupt bulk spill chunk")
	}
	c.rec = c.buf[k : k+int(l)]
	c.buf = c.buf[k+int(l):]
	return true, nil
}

// spillHeap orders cursors by the key of their current record.
type spillHeap struct{ cs []*spillCursor }

func (h *spillHeap) Len() int           { return len(h.cs) }
func (h *spillHeap) Less(i, j int) bool { return h.cs[i].key < h.cs[j].key }
func (h *spillHeap) Swap(i, j int)      { h.cs[i], h.cs[j] = h.cs[j], h.cs[i] }
func (h *spillHeap) Push(x any)         { h.cs = append(h.cs, x.(*spillCursor)) }
func (h *spillHeap) Pop() any {
	c := h.cs[len(h.cs)-1]
	h.cs = h.cs[:len(h.cs)-1]
	return c
}

// close releases the file (and its space); later calls do nothing.
func (s *spill) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// countDeltas holds the counter changes of a bulk catch-up's recipient
// passes until they can be added in time order. Each recipient pass runs
// through the whole range's event time, so adding its changes at once
// would touch every minute counter of the range in every pass: past the
// counter cache, that is a store read and write per counter and pass. So
// addCount spills them instead, into buckets by minute, and addDeltas adds
// them bucket by bucket once the passes are done: the counters of a few
// minutes at a time, each read and written once. Counters only add up, so
// the order of the changes does not matter.
type countDeltas struct {
	sp *spill
	// A series' id is found by its hash (ids), which a hash collision
	// can point at another series: byName settles those.
	ids    map[uint64]uint32
	byName map[string]uint32
	series []string // id -> series
	t0     int64    // event time of the first bucket's start, µs
	width  int64    // µs per bucket
	buf    []byte
}

func newCountDeltas(dir string, tmin, tmax int64) (*countDeltas, error) {
	lo, hi := floorDiv(tmin, microsPerMinute), floorDiv(tmax, microsPerMinute)
	minutes := max(hi-lo+1, 1)
	nb := min(minutes, maxSpillBuckets)
	sp, err := newSpill(dir, int(nb))
	if err != nil {
		return nil, err
	}
	width := (minutes + nb - 1) / nb * microsPerMinute
	return &countDeltas{sp: sp, ids: map[uint64]uint32{}, byName: map[string]uint32{}, t0: lo * microsPerMinute, width: width}, nil
}

// add spills a change of d at event time t to series s.
func (c *countDeltas) add(s []byte, t, d int64) error {
	h := xxh3.Hash(s)
	id, ok := c.ids[h]
	if !ok || c.series[id] != string(s) {
		if id, ok = c.byName[string(s)]; !ok {
			id = uint32(len(c.series))
			c.series = append(c.series, string(s))
			c.byName[c.series[id]] = id
		}
		c.ids[h] = id
	}
	b := min(max(floorDiv(t-c.t0, c.width), 0), int64(len(c.sp.n)-1))
	c.buf = binary.AppendUvarint(c.buf[:0], uint64(id))
	c.buf = binary.AppendVarint(c.buf, t-c.t0)
	c.buf = binary.AppendVarint(c.buf, d)
	return c.sp.add(int(b), c.buf)
}

// each calls fn with every change of bucket b.
func (c *countDeltas) each(b int, fn func(s []byte, t, d int64) error) error {
	var sb []byte
	return c.sp.read([]int{b}, nil, func(rec []byte) error {
		id, n := binary.Uvarint(rec)
		dt, m := binary.Varint(rec[max(n, 0):])
		d, k := binary.Varint(rec[max(n, 0)+max(m, 0):])
		if n <= 0 || m <= 0 || k <= 0 || id >= uint64(len(c.series)) {
			return errors.New("engine: corrupt counter delta")
		}
		sb = append(sb[:0], c.series[id]...)
		return fn(sb, c.t0+dt, d)
	})
}

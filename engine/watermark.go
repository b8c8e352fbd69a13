package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/event"
)

// Watermarks. Each source has one: the largest event time applied so far
// minus the allowed lateness. A window that ends at or before its source's
// watermark is final; an event whose time is behind the watermark when it
// is applied is late. A late event still updates its windows (nothing is
// dropped); it is also counted in the campaign's late series, so every
// window reports how often it changed after it became final (its
// revision).
//
// The watermark depends only on the log's order and contents, so a rebuild
// classifies exactly the same events as late as the incremental path did
// (with the same allowed lateness).

const (
	prefixMark = 'w'
	// mLate is the series of late events of a campaign, counted at their
	// event time. Outside the recipient (0..) and event (32+type) ranges.
	mLate metric = 96
)

// sourceMark is one source's watermark state.
type sourceMark struct {
	max   int64 // largest (clamped) event time applied, Unix micros; MinInt64 before any
	late  int64 // late events applied
	dirty bool
}

func (m *sourceMark) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(m.max))
	return binary.BigEndian.AppendUint64(b, uint64(m.late))
}

func (m *sourceMark) decode(v []byte) error {
	if len(v) != 16 {
		return fmt.Errorf("watermark: %w", errCorrupt)
	}
	m.max = int64(binary.BigEndian.Uint64(v))
	m.late = int64(binary.BigEndian.Uint64(v[8:]))
	return nil
}

func markKey(source string) []byte { return append([]byte{prefixMark}, source...) }

// watermark is the source's watermark in Unix micros, MinInt64 when the
// source has no events yet.
func (m *sourceMark) watermark(latenessUS int64) int64 {
	if m.max == math.MinInt64 {
		return math.MinInt64
	}
	return m.max - latenessUS
}

// observe classifies event time t (Unix micros) of an event received at
// recv against the watermark and advances it. An event time in the future
// of the event's own reception is clamped to the reception time, so that
// one event with a wrong clock cannot make everything after it late.
func (e *Engine) observe(ev *event.Event, t int64) (late bool) {
	m := e.marks[ev.Source]
	if m == nil {
		m = &sourceMark{max: math.MinInt64}
		e.marks[ev.Source] = m
	}
	if t < m.watermark(e.latenessUS) {
		late = true
		m.late++
	}
	adv := t
	if !ev.ReceivedTime.IsZero() {
		adv = min(adv, ev.ReceivedTime.UnixMicro())
	}
	if adv > m.max {
		m.max = adv
	}
	if !m.dirty {
		m.dirty = true
		e.dirtyMarks = append(e.dirtyMarks, ev.Source)
	}
	return late
}

func (e *Engine) loadMarks(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{prefixMark}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		m := &sourceMark{}
		if err := it.Item().Value(m.decode); err != nil {
			return err
		}
		e.marks[string(it.Item().Key()[1:])] = m
	}
	return nil
}

func (e *Engine) stageMarks(txn writer) error {
	for _, s := range e.dirtyMarks {
		if err := txn.Set(markKey(s), e.marks[s].encode()); err != nil {
			return fmt.Errorf("stage watermark: %w", err)
		}
	}
	return nil
}

func (e *Engine) cleanMarks() {
	for _, s := range e.dirtyMarks {
		e.marks[s].dirty = false
	}
	e.dirtyMarks = e.dirtyMarks[:0]
}

// Watermark is one source's event-time progress.
type Watermark struct {
	Source string `json:"source"`
	// MaxEventTime is the largest event time applied (clamped to the
	// events' reception times).
	MaxEventTime time.Time `json:"max_event_time"`
	// Watermark is MaxEventTime minus the allowed lateness: windows ending
	// at or before it are final.
	Watermark time.Time `json:"watermark"`
	// LateEvents counts events applied behind the watermark.
	LateEvents int64 `json:"late_events"`
}

// AllowedLateness is how far behind a source's newest event time an event
// may be and still not count as late.
func (e *Engine) AllowedLateness() time.Duration {
	return time.Duration(e.latenessUS) * time.Microsecond
}

// Watermarks returns every source's watermark as last committed, ordered
// by source.
func (e *Engine) Watermarks() ([]Watermark, error) {
	out := []Watermark{}
	err := e.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{prefixMark}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var m sourceMark
			if err := it.Item().Value(m.decode); err != nil {
				return err
			}
			out = append(out, Watermark{Source: string(it.Item().Key()[1:]), MaxEventTime: time.UnixMicro(m.max).UTC(),
				Watermark: time.UnixMicro(m.watermark(e.latenessUS)).UTC(), LateEvents: m.late})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out, err
}

// LateEvents returns the late events applied per source, from the apply
// side's memory (for metrics; includes the not yet committed batch).
func (e *Engine) LateEvents() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.marks))
	for s, m := range e.marks {
		out[s] = m.late
	}
	return out
}

// sourceWatermark reads source's committed watermark within txn.
func (e *Engine) sourceWatermark(txn *badger.Txn, source string) (int64, error) {
	item, err := txn.Get(markKey(source))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return math.MinInt64, nil
	}
	if err != nil {
		return 0, err
	}
	var m sourceMark
	if err := item.Value(m.decode); err != nil {
		return 0, err
	}
	return m.watermark(e.latenessUS), nil
}

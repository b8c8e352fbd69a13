package engine

import (
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/event"
)

// Point is one window of a time series: counts of events per type whose
// event time lies in [Start, Start+window) and in the query's range.
type Point struct {
	Start  time.Time        `json:"start"`
	Counts map[string]int64 `json:"counts"`
	// Final is true when the window ends at or before the source's
	// watermark: only late events can still change it.
	Final bool `json:"final"`
	// LateEvents counts the window's events that arrived behind the
	// watermark; Revision is the number of changes the window had after
	// it became final, one per late event (0: as first finalised).
	LateEvents int64 `json:"late_events"`
	Revision   int64 `json:"revision"`
	// Recipients are distinct recipients per event type in the window,
	// when asked for (see TimeseriesOptions.Distinct).
	Recipients map[string]int64 `json:"recipients,omitempty"`
}

// TimeseriesOptions are the optional parts of a time series.
type TimeseriesOptions struct {
	// Distinct adds each window's distinct recipients per event type,
	// estimated from per-minute HyperLogLog sketches (see distinct.go).
	Distinct bool
}

// Windows are the supported time-series window sizes.
var Windows = map[string]time.Duration{"1m": time.Minute, "5m": 5 * time.Minute, "1h": time.Hour, "1d": 24 * time.Hour}

// Timeseries returns a campaign's event counts per type in event-time
// windows (aligned to the Unix epoch, so days start at 00:00 UTC). Windows
// without events are omitted. The minute level answers whole minutes; the
// two partial minutes at the edges of r are read from the microsecond level,
// so the counts are exact for any range.
func (e *Engine) Timeseries(ref CampaignRef, window time.Duration, r Range) ([]Point, error) {
	return e.TimeseriesWith(ref, window, r, TimeseriesOptions{})
}

// TimeseriesWith is Timeseries with options.
func (e *Engine) TimeseriesWith(ref CampaignRef, window time.Duration, r Range, opts TimeseriesOptions) ([]Point, error) {
	if window < time.Minute || window%time.Minute != 0 {
		return nil, fmt.Errorf("window %v: must be a whole number of minutes", window)
	}
	w := window.Microseconds()
	points := map[int64]*Point{}
	point := func(t int64) *Point {
		start := floorDiv(t, w) * w
		p := points[start]
		if p == nil {
			p = &Point{Start: time.UnixMicro(start).UTC(), Counts: map[string]int64{}}
			points[start] = p
		}
		return p
	}
	add := func(t int64, typ event.Type, n int64) {
		if n != 0 {
			point(t).Counts[typ.String()] += n
		}
	}
	var mark int64
	err := e.view(func(txn *badger.Txn) error {
		c, err := resolve(txn, ref)
		if err != nil {
			return err
		}
		from, to, _ := r.bounds()
		for _, typ := range event.Types() {
			if err := scanCounts(txn, metricSeries(c.ID, eventMetric(typ)), from, to, func(t, n int64) { add(t, typ, n) }); err != nil {
				return err
			}
		}
		if err := scanCounts(txn, metricSeries(c.ID, mLate), from, to, func(t, n int64) { point(t).LateEvents += n }); err != nil {
			return err
		}
		if opts.Distinct {
			if err := e.distinctInto(txn, c.ID, w, from, to, points); err != nil {
				return err
			}
		}
		mark, err = e.sourceWatermark(txn, c.Source)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Point, 0, len(points))
	for start, p := range points {
		p.Final = start+w <= mark
		p.Revision = p.LateEvents
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

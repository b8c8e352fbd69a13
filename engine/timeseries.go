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
}

// Windows are the supported time-series window sizes.
var Windows = map[string]time.Duration{"1m": time.Minute, "5m": 5 * time.Minute, "1h": time.Hour, "1d": 24 * time.Hour}

// Timeseries returns a campaign's event counts per type in event-time
// windows (aligned to the Unix epoch, so days start at 00:00 UTC). Windows
// without events are omitted. The minute level answers whole minutes; the
// two partial minutes at the edges of r are read from the microsecond level,
// so the counts are exact for any range.
func (e *Engine) Timeseries(ref CampaignRef, window time.Duration, r Range) ([]Point, error) {
	if window < time.Minute || window%time.Minute != 0 {
		return nil, fmt.Errorf("window %v: must be a whole number of minutes", window)
	}
	w := window.Microseconds()
	points := map[int64]map[string]int64{}
	add := func(t int64, typ event.Type, n int64) {
		if n == 0 {
			return
		}
		start := floorDiv(t, w) * w
		p := points[start]
		if p == nil {
			p = map[string]int64{}
			points[start] = p
		}
		p[typ.String()] += n
	}
	err := e.db.View(func(txn *badger.Txn) error {
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
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Point, 0, len(points))
	for start, counts := range points {
		out = append(out, Point{Start: time.UnixMicro(start).UTC(), Counts: counts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// TestSpillMergesBucketsInLogOrder spills events of many recipients into
// buckets and reads groups of buckets back: each group must yield exactly
// its buckets' events, in log order, whatever the chunk boundaries (events
// of random sizes, some larger than a chunk).
func TestSpillMergesBucketsInLogOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const nb, n = 13, 5000
	sp, err := newSpill(t.TempDir(), nb)
	require.NoError(t, err)
	defer sp.close()
	want := make([][]uint64, nb)
	var buf []byte
	for seq := uint64(1); seq <= n; seq++ {
		r := "user" + string(rune('a'+rng.IntN(26))) + string(rune('a'+rng.IntN(26)))
		size := rng.IntN(200)
		if rng.IntN(500) == 0 {
			size = spillChunkBytes + rng.IntN(1000)
		}
		ev := event.Event{Seq: seq, Recipient: r, Subject: string(make([]byte, size)), EventTime: time.Unix(int64(seq), 0)}
		buf = event.Append(buf[:0], &ev)
		b := spillBucket(r, nb)
		require.NoError(t, sp.add(b, buf))
		want[b] = append(want[b], seq)
	}
	require.NoError(t, sp.finish())
	for _, group := range [][]int{{0}, {1, 2, 3}, {4, 5, 6, 7, 8, 9, 10, 11, 12}} {
		var exp, got []uint64
		for _, b := range group {
			exp = append(exp, want[b]...)
		}
		slices.Sort(exp)
		require.NoError(t, sp.read(group, eventSeq, func(rec []byte) error {
			var ev event.Event
			_, err := event.Decode(rec, &ev)
			require.NoError(t, err)
			require.Contains(t, group, spillBucket(ev.Recipient, nb))
			got = append(got, ev.Seq)
			return nil
		}))
		require.Equal(t, exp, got, "group %v", group)
	}
}

// TestSpillLeavesNoFile: the spill file is unlinked at once, so a crash
// cannot leave it behind.
func TestSpillLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	sp, err := newSpill(dir, 2)
	require.NoError(t, err)
	require.NoError(t, sp.add(1, []byte("x")))
	require.NoError(t, sp.finish())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents)
	require.NoError(t, sp.close())
}

// TestCountDeltasRoundTrip: every change comes back once, in the bucket of
// its minute, and changes outside the range given (state carried from
// before it) land in the edge buckets rather than being lost.
func TestCountDeltasRoundTrip(t *testing.T) {
	const minute = int64(microsPerMinute)
	tmin, tmax := 1000*minute+5, 3000*minute+7 // 2001 minutes: buckets of 2
	cd, err := newCountDeltas(t.TempDir(), tmin, tmax)
	require.NoError(t, err)
	defer cd.sp.close()
	require.Equal(t, maxSpillBuckets, len(cd.sp.n))
	type change struct {
		s    string
		t, d int64
	}
	rng := rand.New(rand.NewPCG(3, 3))
	var want []change
	for i := 0; i < 3000; i++ {
		c := change{s: string(binary.BigEndian.AppendUint32(nil, uint32(rng.IntN(40)))), t: tmin + rng.Int64N(tmax-tmin+1), d: int64(rng.IntN(5)) - 2}
		switch i {
		case 0:
			c.t = tmin - 10*minute
		case 1:
			c.t = tmax + 10*minute
		}
		want = append(want, c)
		require.NoError(t, cd.add([]byte(c.s), c.t, c.d))
	}
	require.NoError(t, cd.sp.finish())
	var got []change
	for b := range len(cd.sp.n) {
		require.NoError(t, cd.each(b, func(s []byte, tt, d int64) error {
			m := floorDiv(tt, minute)
			exp := min(max((m-1000)/2, 0), maxSpillBuckets-1)
			require.Equal(t, exp, int64(b), "time %d", tt)
			got = append(got, change{string(s), tt, d})
			return nil
		}))
	}
	cmp := func(a, b change) int {
		switch {
		case a.t != b.t:
			return int(a.t - b.t)
		case a.s != b.s:
			if a.s < b.s {
				return -1
			}
			return 1
		}
		return int(a.d - b.d)
	}
	slices.SortFunc(want, cmp)
	slices.SortFunc(got, cmp)
	require.Equal(t, want, got)
}

func bulkTestEvent(i int, typ event.Type, r, camp string) event.Event {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return event.Event{Source: "sp", Provider: "sendpulse", ProviderEvent: typ.String(), Type: typ,
		Account: "a", Campaign: camp, Recipient: r, RecipientDomain: event.Domain(r),
		EventTime: base.Add(time.Duration(i) * time.Second), ReceivedTime: base.Add(48 * time.Hour), MessageID: fmt.Sprint(i)}
}

// inBucket returns k recipients named prefix<i>@x.com in bucket b of nb.
func inBucket(prefix string, b, nb, k int) []string {
	var out []string
	for i := 0; len(out) < k; i++ {
		s := fmt.Sprintf("%s%d@x.com", prefix, i)
		if spillBucket(s, nb) == b {
			out = append(out, s)
		}
	}
	return out
}

// TestBulkLiftBetweenGroupEvents: operator lifts recorded at events
// without a recipient fall between two events of the lifted recipient's
// group, so a recipient pass applies them before the next event, outside
// apply, after a batch end has closed the read transaction. (A review
// found this crashing the rebuild.)
func TestBulkLiftBetweenGroupEvents(t *testing.T) {
	l := storagetest.New(t)
	const nb = maxSpillBuckets // the log has over 512 events and the cache is 1
	rs := inBucket("r", 7, nb, 30)
	s := inBucket("s", 7, nb, 1)[0]
	i := 0
	next := func(typ event.Type, rc, camp string) event.Event {
		i++
		return bulkTestEvent(i, typ, rc, camp)
	}
	inc, err := Open(DefaultConfig(t.TempDir()), l)
	require.NoError(t, err)
	defer inc.Close()
	app := func(evs ...event.Event) {
		_, err := l.AppendCtx(evs...)
		require.NoError(t, err)
		require.NoError(t, inc.CatchUp(context.Background(), nil))
	}
	for _, r := range rs {
		app(next(event.Complained, r, "c0"))
	}
	for j, r := range rs {
		var blk []event.Event
		for k := 0; k < 20; k++ {
			blk = append(blk, next(event.Delivered, s, fmt.Sprintf("c%d-%d", j, k)))
		}
		blk = append(blk, next(event.Sent, "", "c0"))
		app(blk...)
		_, seq, err := inc.LiftSuppression(r)
		require.NoError(t, err)
		require.Equal(t, uint64(i), seq)
	}
	app(next(event.Delivered, s, "c0"))
	lifts, err := inc.Lifts()
	require.NoError(t, err)
	require.Len(t, lifts, len(rs))

	dir := t.TempDir()
	cfg := DefaultConfig(dir).ForBulk(dir)
	cfg.RecipientCache, cfg.BatchEvents = 1, 1
	reb, err := Open(cfg, l)
	require.NoError(t, err)
	defer reb.Close()
	require.NoError(t, reb.ImportLifts(lifts))
	require.NoError(t, reb.CatchUp(context.Background(), nil))
	a, _, err := inc.Suppressions("", "", 1000)
	require.NoError(t, err)
	b, _, err := reb.Suppressions("", "", 1000)
	require.NoError(t, err)
	require.Equal(t, a, b)
}

// cancelAfterRead cancels its context once the first pass's read of the
// log is over.
type cancelAfterRead struct {
	Log
	cancel func()
	reads  int
}

func (c *cancelAfterRead) ReadFrom(ctx context.Context, from uint64, fn func(*event.Event) error) error {
	c.reads++
	err := c.Log.ReadFrom(ctx, from, fn)
	c.cancel()
	return err
}

// TestBulkCancelStopsRecipientPasses: a cancel is noticed within the
// recipient passes, not only at batch ends, which groups smaller than a
// bulk batch never reach.
func TestBulkCancelStopsRecipientPasses(t *testing.T) {
	l := storagetest.New(t)
	var evs []event.Event
	for i := range 5000 {
		evs = append(evs, bulkTestEvent(i, event.Delivered, fmt.Sprintf("u%d@x.com", i%2000), "c1"))
	}
	_, err := l.AppendCtx(evs...)
	require.NoError(t, err)
	dir := t.TempDir()
	cfg := DefaultConfig(dir).ForBulk(dir) // batches of 100,000 events
	cfg.RecipientCache = 100
	ctx, cancel := context.WithCancel(context.Background())
	src := &cancelAfterRead{Log: l, cancel: cancel}
	eng, err := Open(cfg, src)
	require.NoError(t, err)
	defer eng.Close()
	err = eng.CatchUp(ctx, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, src.reads)
	// Each finished recipient pass writes its group's records: none may
	// finish after the cancel (the first pass writes nothing here).
	require.Zero(t, eng.Stats().Keys, "state keys written after the cancel")
	require.Zero(t, eng.Applied())
}

// gapThenFail is a log whose events skip a seq from the 1,500th on and
// whose read fails at the 1,600th.
type gapThenFail struct{ Log }

var errReadFailed = errors.New("read failed")

func (g gapThenFail) ReadFrom(ctx context.Context, from uint64, fn func(*event.Event) error) error {
	n := 0
	err := g.Log.ReadFrom(ctx, from, func(ev *event.Event) error {
		if n++; n == 1600 {
			return errReadFailed
		}
		if n >= 1500 {
			ev.Seq++
		}
		return fn(ev)
	})
	if err == nil {
		err = errReadFailed
	}
	return err
}

// TestBulkPassReportsTheFirstError: the first pass reads ahead of apply on
// its own goroutine, but an error of apply at an event before the one the
// read failed at is still the one reported, as in log order.
func TestBulkPassReportsTheFirstError(t *testing.T) {
	l := storagetest.New(t)
	var evs []event.Event
	for i := range 2000 {
		evs = append(evs, bulkTestEvent(i, event.Delivered, fmt.Sprintf("u%d@x.com", i), "c1"))
	}
	_, err := l.AppendCtx(evs...)
	require.NoError(t, err)
	dir := t.TempDir()
	eng, err := Open(DefaultConfig(dir).ForBulk(dir), gapThenFail{l})
	require.NoError(t, err)
	defer eng.Close()
	err = eng.CatchUp(context.Background(), nil)
	require.ErrorContains(t, err, "log gap")
	require.NotErrorIs(t, err, errReadFailed)
}

// TestRecipientPassRefusesUnknownCampaign: a recipient pass never adds to
// the campaign catalogue, which a background writer reads meanwhile; an
// event whose campaign the first pass did not add is an error.
func TestRecipientPassRefusesUnknownCampaign(t *testing.T) {
	l := storagetest.New(t)
	dir := t.TempDir()
	eng, err := Open(DefaultConfig(dir).ForBulk(dir), l)
	require.NoError(t, err)
	defer eng.Close()
	eng.part, eng.sparse = partRecip, true
	ev := bulkTestEvent(1, event.Delivered, "u@x.com", "never-seen")
	ev.Seq = 7
	require.ErrorContains(t, eng.apply(&ev), "campaign of seq 7 is missing")
	require.Empty(t, eng.camps)
}

package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/engine/bounce"
	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

var base = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// hotSeconds are where randomStream puts a quarter of its events, so that
// range edges inside a second cut through many events.
var hotSeconds = []time.Time{base.Add(17*time.Minute + 3*time.Second), base.Add(61*time.Minute + 59*time.Second), base.Add(83 * time.Minute)}

// randomStream makes n events over a few campaigns and recipients, with
// redeliveries, out-of-order times (microsecond precision, spread over two
// hours), mixed-case and padded addresses, and every event type.
func randomStream(rng *rand.Rand, n int) []event.Event {
	types := event.Types()
	out := make([]event.Event, 0, n)
	for i := 0; i < n; i++ {
		if i > 0 && rng.IntN(10) == 0 {
			out = append(out, out[rng.IntN(len(out))]) // redelivery
			continue
		}
		r := fmt.Sprintf("user%d@Example.com", rng.IntN(40))
		switch rng.IntN(4) {
		case 0:
			r = strings.ToUpper(r)
		case 1:
			r = "  " + r + " "
		}
		acct := "a1"
		if rng.IntN(5) == 0 {
			acct = "a2"
		}
		typ := types[rng.IntN(len(types))]
		reply := replies[rng.IntN(len(replies))]
		et := base.Add(time.Duration(rng.Int64N(int64(2 * time.Hour)))).Truncate(time.Microsecond)
		if rng.IntN(4) == 0 {
			// A busy second: many events, some on the whole second.
			et = hotSeconds[rng.IntN(len(hotSeconds))]
			if rng.IntN(3) > 0 {
				et = et.Add(time.Duration(rng.Int64N(int64(time.Second)))).Truncate(time.Microsecond)
			}
		}
		recv := base.Add(2 * time.Hour)
		if rng.IntN(20) == 0 {
			recv = et.Add(-10 * time.Minute) // the sender's clock is ahead
		}
		out = append(out, event.Event{
			SMTPCode: reply.code, SMTPStatus: reply.status, SMTPResponse: reply.text,
			Source: "sp", Provider: "sendpulse", ProviderEvent: typ.String(), Type: typ,
			Account: acct, Campaign: fmt.Sprintf("c%d", rng.IntN(3)), Recipient: r,
			RecipientDomain: event.Domain(r),
			EventTime:       et, ReceivedTime: recv, MessageID: fmt.Sprint(i),
		})
	}
	return out
}

var replies = []struct {
	code   int32
	status string
	text   string
}{
	{550, "5.1.1", "vch15@i.ua MX: mx23.i.ua RESP: 5.1.1 User unknown"},
	{550, "5.1.0", "MX: mx23.i.ua RESP: Mailbox over quota. See http://mail.i.ua/err/4/"},
	{421, "", "421 4.7.0 Try again later"},
	{554, "5.7.1", "Service unavailable; Client host [1.2.3.4] blocked using zen.spamhaus.org"},
	{0, "", ""},
}

// naiveBounces groups the bounce events of a campaign (or all, ref nil)
// as Bounces should.
func naiveBounces(events []event.Event, ref *engine.CampaignRef, dim string, r engine.Range) []engine.Group {
	type acc struct {
		events int64
		first  map[string]time.Time
	}
	groups := map[string]*acc{}
	for _, e := range events {
		if !e.Type.IsBounce() || (ref != nil && (e.Source != ref.Source || e.Account != ref.Account || e.Campaign != ref.Campaign)) {
			continue
		}
		res := bounce.Classify(bounce.Input{Code: int(e.SMTPCode), Status: e.SMTPStatus, Text: e.SMTPResponse, Label: e.ProviderEvent})
		key := map[string]string{"reason": res.Reason, "class": string(res.Class), "status": res.Status, "domain": e.RecipientDomain, "mx": engine.MXHost(e.SMTPResponse)}[dim]
		if dim == "status" && key == "" {
			key = "none"
		}
		if key == "" {
			continue
		}
		g := groups[key]
		if g == nil {
			g = &acc{first: map[string]time.Time{}}
			groups[key] = g
		}
		if (r.From.IsZero() || !e.EventTime.Before(r.From)) && (r.To.IsZero() || e.EventTime.Before(r.To)) {
			g.events++
		}
		rec := event.NormalizeRecipient(e.Recipient)
		if t, ok := g.first[rec]; !ok || e.EventTime.Before(t) {
			g.first[rec] = e.EventTime
		}
	}
	out := []engine.Group{}
	for k, g := range groups {
		var n int64
		for _, t := range g.first {
			if (r.From.IsZero() || !t.Before(r.From)) && (r.To.IsZero() || t.Before(r.To)) {
				n++
			}
		}
		if g.events != 0 || n != 0 {
			out = append(out, engine.Group{Key: k, Events: g.events, Recipients: n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Events != out[j].Events {
			return out[i].Events > out[j].Events
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// naiveFunnel recomputes the contract's funnel from the accepted events,
// as directly as possible.
func naiveFunnel(events []event.Event, ref engine.CampaignRef, r engine.Range) map[string]engine.Count {
	in := func(t time.Time) bool {
		return (r.From.IsZero() || !t.Before(r.From)) && (r.To.IsZero() || t.Before(r.To))
	}
	stageOf := map[event.Type][]string{
		event.Sent: {"sent"}, event.Delivered: {"sent", "delivered"},
		event.Opened: {"sent", "delivered", "opened"}, event.Clicked: {"sent", "delivered", "opened", "clicked"},
		event.SoftBounce: {"sent", "soft_bounced"}, event.HardBounce: {"sent", "hard_bounced"},
		event.Undelivered: {"sent", "undelivered"}, event.Unsubscribed: {"sent", "unsubscribed"},
		event.Complained: {"sent", "complained"},
	}
	typeOf := map[string]event.Type{
		"sent": event.Sent, "delivered": event.Delivered, "opened": event.Opened, "clicked": event.Clicked,
		"soft_bounced": event.SoftBounce, "hard_bounced": event.HardBounce, "undelivered": event.Undelivered,
		"unsubscribed": event.Unsubscribed, "complained": event.Complained,
	}
	first := map[string]map[string]time.Time{}
	out := map[string]engine.Count{}
	for _, e := range events {
		if e.Source != ref.Source || e.Account != ref.Account || e.Campaign != ref.Campaign {
			continue
		}
		for name, typ := range typeOf {
			if e.Type == typ && in(e.EventTime) {
				c := out[name]
				c.Events++
				out[name] = c
			}
		}
		rec := strings.ToLower(strings.TrimSpace(e.Recipient))
		for _, st := range stageOf[e.Type] {
			if first[st] == nil {
				first[st] = map[string]time.Time{}
			}
			if t, ok := first[st][rec]; !ok || e.EventTime.Before(t) {
				first[st][rec] = e.EventTime
			}
		}
	}
	for st, m := range first {
		for _, t := range m {
			if in(t) {
				c := out[st]
				c.Recipients++
				out[st] = c
			}
		}
	}
	for name := range typeOf {
		if _, ok := out[name]; !ok {
			out[name] = engine.Count{}
		}
	}
	return out
}

// lateness replays the watermark rule over events in log order: which
// events were late, and each source's final watermark.
func lateness(events []event.Event, allowed time.Duration) (late []bool, marks map[string]time.Time) {
	newest := map[string]time.Time{}
	late = make([]bool, len(events))
	for i, e := range events {
		if m, ok := newest[e.Source]; ok && e.EventTime.Before(m.Add(-allowed)) {
			late[i] = true
		}
		adv := e.EventTime
		if e.ReceivedTime.Before(adv) {
			adv = e.ReceivedTime
		}
		if m, ok := newest[e.Source]; !ok || adv.After(m) {
			newest[e.Source] = adv
		}
	}
	marks = map[string]time.Time{}
	for s, m := range newest {
		marks[s] = m.Add(-allowed)
	}
	return late, marks
}

// naiveSeries counts events per type in windows of w, as Timeseries should,
// with the late events, finality and (distinct) recipients per window.
func naiveSeries(events []event.Event, allowed time.Duration, ref engine.CampaignRef, w time.Duration, r engine.Range, distinct bool) []engine.Point {
	late, marks := lateness(events, allowed)
	byStart := map[time.Time]*engine.Point{}
	recips := map[time.Time]map[string]map[string]bool{}
	for i, e := range events {
		if e.Source != ref.Source || e.Account != ref.Account || e.Campaign != ref.Campaign {
			continue
		}
		start := e.EventTime.Truncate(w)
		// Distinct recipients come from whole minutes.
		m := e.EventTime.Truncate(time.Minute)
		if rec := event.NormalizeRecipient(e.Recipient); distinct && rec != "" && (r.From.IsZero() || !m.Before(r.From.Truncate(time.Minute))) && (r.To.IsZero() || m.Before(r.To)) {
			if recips[start] == nil {
				recips[start] = map[string]map[string]bool{}
			}
			if recips[start][e.Type.String()] == nil {
				recips[start][e.Type.String()] = map[string]bool{}
			}
			recips[start][e.Type.String()][rec] = true
		}
		if (!r.From.IsZero() && e.EventTime.Before(r.From)) || (!r.To.IsZero() && !e.EventTime.Before(r.To)) {
			continue
		}
		p := byStart[start]
		if p == nil {
			p = &engine.Point{Start: start, Counts: map[string]int64{}, Final: !start.Add(w).After(marks[e.Source])}
			byStart[start] = p
		}
		p.Counts[e.Type.String()]++
		if late[i] {
			p.LateEvents++
			p.Revision++
		}
	}
	out := []engine.Point{}
	for start, p := range byStart {
		for typ, set := range recips[start] {
			if p.Recipients == nil {
				p.Recipients = map[string]int64{}
			}
			p.Recipients[typ] = int64(len(set))
		}
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

func flatten(f *engine.Funnel) map[string]engine.Count {
	out := map[string]engine.Count{}
	for k, v := range f.Stages {
		out[k] = v
	}
	for k, v := range f.Outcomes {
		out[k] = v
	}
	return out
}

func accepted(t *testing.T, l *storage.Log) []event.Event {
	var out []event.Event
	require.NoError(t, l.ReadFrom(context.Background(), 1, func(e *event.Event) error {
		out = append(out, *e)
		return nil
	}))
	return out
}

// TestFunnelMatchesNaiveModel checks the engine against the naive model
// over seeded random streams, applied in random batches with restarts of
// the engine in between (state must survive via the checkpoint), and with
// random from/to ranges at minute and microsecond precision.
func TestFunnelMatchesNaiveModel(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			l := storagetest.New(t)
			dir := t.TempDir()
			cfg := engine.DefaultConfig(dir)
			cfg.BatchEvents = 1 + rng.IntN(50)
			cfg.RecipientCache = 1 + rng.IntN(20) // force evictions
			cfg.CounterCache = 1 + rng.IntN(50)
			cfg.SuppressSoftCount = 2 + rng.IntN(2)
			cfg.SuppressSoftWindow = time.Duration(5+rng.IntN(40)) * time.Minute
			cfg.AllowedLateness = time.Duration(1+rng.IntN(60)) * time.Minute
			stream := randomStream(rng, 600)
			var lifts []engine.Lift
			for len(stream) > 0 {
				n := min(len(stream), 1+rng.IntN(150))
				_, err := l.AppendCtx(stream[:n]...)
				require.NoError(t, err)
				stream = stream[n:]
				eng, err := engine.Open(cfg, l)
				require.NoError(t, err)
				require.NoError(t, eng.CatchUp(context.Background(), nil))
				require.Equal(t, l.LastSeq(), eng.Applied())
				// An operator lifts a few suppressions between batches.
				sups, _, err := eng.Suppressions("", "", 1000)
				require.NoError(t, err)
				for i := 0; i < len(sups) && i < 3; i++ {
					sp := sups[rng.IntN(len(sups))]
					if _, err := eng.Suppression(sp.Recipient); err != nil {
						continue // lifted just now
					}
					got, seq, err := eng.LiftSuppression(" " + strings.ToUpper(sp.Recipient))
					require.NoError(t, err)
					require.Equal(t, sp, *got)
					require.Equal(t, l.LastSeq(), seq)
					lifts = append(lifts, engine.Lift{Seq: seq, Recipient: sp.Recipient})
					_, err = eng.Suppression(sp.Recipient)
					require.ErrorIs(t, err, engine.ErrNotFound)
				}
				if rng.IntN(2) == 0 {
					require.NoError(t, engine.Crash(eng)) // sketches not flushed
				} else {
					require.NoError(t, eng.Close())
				}
			}
			events := accepted(t, l)
			eng, err := engine.Open(cfg, l)
			require.NoError(t, err)
			defer eng.Close()

			// Suppressions: the whole list, paged with a random limit, per
			// reason, and each address looked up in another spelling.
			wantSup := naiveSuppressions(events, lifts, cfg.SuppressSoftCount, cfg.SuppressSoftWindow)
			require.Equal(t, wantSup, pageAll(t, eng, "", 1+rng.IntN(7)), "seed %d suppressions", seed)
			for _, reason := range engine.SuppressionReasons {
				want := []engine.Suppression{}
				for _, sp := range wantSup {
					if sp.Reason == reason {
						want = append(want, sp)
					}
				}
				require.Equal(t, want, pageAll(t, eng, reason, 1+rng.IntN(4)), "seed %d suppressions %s", seed, reason)
			}
			for _, sp := range wantSup {
				got, err := eng.Suppression("  " + strings.ToUpper(sp.Recipient))
				require.NoError(t, err)
				require.Equal(t, sp, *got)
			}
			sort.Slice(lifts, func(i, j int) bool {
				a, b := lifts[i], lifts[j]
				return a.Seq < b.Seq || a.Seq == b.Seq && a.Recipient < b.Recipient
			})
			gotLifts, err := eng.Lifts()
			require.NoError(t, err)
			require.Equal(t, lifts, gotLifts)

			// A rebuild with the lift journal gives the same state; every
			// other seed with caches so small that bulk mode writes dirty
			// records on eviction and reads them back.
			rcfg := engine.Config{Dir: t.TempDir(), SuppressSoftCount: cfg.SuppressSoftCount, SuppressSoftWindow: cfg.SuppressSoftWindow,
				AllowedLateness: cfg.AllowedLateness, Bulk: true, BatchEvents: 1 + rng.IntN(300)}
			if seed%2 == 1 {
				rcfg.RecipientCache, rcfg.CounterCache = 1+rng.IntN(40), 1+rng.IntN(100)
			}
			reb, err := engine.Open(rcfg, l)
			require.NoError(t, err)
			require.NoError(t, reb.ImportLifts(gotLifts))
			require.NoError(t, reb.CatchUp(context.Background(), nil))
			require.Equal(t, wantSup, pageAll(t, reb, "", 1000), "seed %d suppressions after rebuild", seed)
			// Incremental == rebuild, byte for byte, for every answer.
			if a, b := allAnswers(t, eng), allAnswers(t, reb); !bytes.Equal(a, b) {
				var as, bs []json.RawMessage
				require.NoError(t, json.Unmarshal(a, &as))
				require.NoError(t, json.Unmarshal(b, &bs))
				for i := range as {
					require.Equal(t, string(as[i]), string(bs[i]), "seed %d answer %d: incremental vs rebuild", seed, i)
				}
			}
			gotLifts, err = reb.Lifts()
			require.NoError(t, err)
			require.Equal(t, lifts, gotLifts)
			require.NoError(t, reb.Close())

			// Watermarks: the rule replayed over the log gives the same
			// watermark and late count; the stream has late events.
			late, marks := lateness(events, cfg.AllowedLateness)
			var nLate int64
			for _, l := range late {
				if l {
					nLate++
				}
			}
			require.Positive(t, nLate)
			ws, err := eng.Watermarks()
			require.NoError(t, err)
			require.Len(t, ws, 1)
			require.Equal(t, marks["sp"], ws[0].Watermark, "seed %d watermark", seed)
			require.Equal(t, nLate, ws[0].LateEvents, "seed %d late events", seed)

			ranges := []engine.Range{{}}
			for i := 0; i < 6; i++ {
				a := base.Add(time.Duration(rng.Int64N(int64(2 * time.Hour))))
				b := a.Add(time.Duration(rng.Int64N(int64(time.Hour))))
				if i%2 == 0 {
					a, b = a.Truncate(time.Minute), b.Truncate(time.Second)
				} else {
					a, b = a.Truncate(time.Microsecond), b.Truncate(time.Microsecond)
				}
				ranges = append(ranges, engine.Range{From: a, To: b}, engine.Range{From: a}, engine.Range{To: b})
			}
			// Edges inside the busy seconds, and a range inside one.
			us := func() time.Duration { return time.Duration(rng.Int64N(int64(time.Second))).Truncate(time.Microsecond) }
			ranges = append(ranges,
				engine.Range{From: hotSeconds[0].Add(us()), To: hotSeconds[2].Add(us())},
				engine.Range{From: hotSeconds[1].Add(us()), To: hotSeconds[1].Add(time.Second)},
				engine.Range{From: hotSeconds[1].Add(200 * time.Millisecond), To: hotSeconds[1].Add(700 * time.Millisecond)},
				engine.Range{From: hotSeconds[2], To: hotSeconds[2].Add(us())})
			// Edges exactly on an event's time inside a busy second.
			for _, ev := range events {
				if t := ev.EventTime; t.Truncate(time.Second).Equal(hotSeconds[1]) && !t.Equal(hotSeconds[1]) {
					ranges = append(ranges, engine.Range{From: t, To: t.Add(time.Microsecond)}, engine.Range{From: hotSeconds[1], To: t})
					break
				}
			}
			for _, r := range ranges {
				got, err := eng.Domains(nil, r)
				require.NoError(t, err)
				require.Equal(t, naiveDomains(events, nil, r), got, "seed %d domains of all campaigns range %v..%v", seed, r.From, r.To)
				for _, dim := range engine.BounceDims {
					got, err := eng.Bounces(nil, dim, r)
					require.NoError(t, err)
					require.Equal(t, naiveBounces(events, nil, dim, r), got, "seed %d all campaigns by %s", seed, dim)
				}
			}
			for _, acct := range []string{"a1", "a2"} {
				for c := 0; c < 3; c++ {
					ref := engine.CampaignRef{Source: "sp", Account: acct, Campaign: fmt.Sprintf("c%d", c)}
					for _, r := range ranges {
						f, err := eng.Funnel(ref, r)
						require.NoError(t, err)
						require.Equal(t, naiveFunnel(events, ref, r), flatten(f), "seed %d %+v range %v..%v", seed, ref, r.From, r.To)
						var late int64
						for _, p := range naiveSeries(events, cfg.AllowedLateness, ref, time.Hour, r, false) {
							late += p.LateEvents
						}
						require.Equal(t, late, f.LateEvents, "seed %d %+v late events", seed, ref)
						doms, err := eng.Domains(&ref, r)
						require.NoError(t, err)
						require.Equal(t, naiveDomains(events, &ref, r), doms, "seed %d domains %+v range %v..%v", seed, ref, r.From, r.To)
						for _, dim := range engine.BounceDims {
							got, err := eng.Bounces(&ref, dim, r)
							require.NoError(t, err)
							require.Equal(t, naiveBounces(events, &ref, dim, r), got, "seed %d %+v by %s", seed, ref, dim)
						}
						for _, w := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour} {
							pts, err := eng.Timeseries(ref, w, r)
							require.NoError(t, err)
							require.Equal(t, naiveSeries(events, cfg.AllowedLateness, ref, w, r, false), pts, "seed %d %+v window %v range %v..%v", seed, ref, w, r.From, r.To)
							// Distinct recipients: HyperLogLog's sparse form
							// is exact at these sizes.
							pts, err = eng.TimeseriesWith(ref, w, r, engine.TimeseriesOptions{Distinct: true})
							require.NoError(t, err)
							require.Equal(t, naiveSeries(events, cfg.AllowedLateness, ref, w, r, true), pts, "seed %d %+v distinct window %v range %v..%v", seed, ref, w, r.From, r.To)
						}
					}
				}
			}
		})
	}
}

// allAnswers is every query answer of the engine over the test streams'
// campaigns and a few ranges, JSON-encoded.
func allAnswers(t *testing.T, eng *engine.Engine) []byte {
	t.Helper()
	var out []any
	ranges := []engine.Range{{}, {From: base.Add(17 * time.Minute), To: base.Add(83*time.Minute + 7*time.Microsecond)}}
	for _, r := range ranges {
		for _, dim := range engine.BounceDims {
			g, err := eng.Bounces(nil, dim, r)
			require.NoError(t, err)
			out = append(out, g)
		}
		d, err := eng.Domains(nil, r)
		require.NoError(t, err)
		out = append(out, d)
		for _, acct := range []string{"a1", "a2"} {
			for c := 0; c < 3; c++ {
				ref := engine.CampaignRef{Source: "sp", Account: acct, Campaign: fmt.Sprintf("c%d", c)}
				f, err := eng.Funnel(ref, r)
				require.NoError(t, err)
				pts, err := eng.TimeseriesWith(ref, 5*time.Minute, r, engine.TimeseriesOptions{Distinct: true})
				require.NoError(t, err)
				d, err := eng.Domains(&ref, r)
				require.NoError(t, err)
				out = append(out, f, pts, d)
			}
		}
	}
	cs, err := eng.Campaigns("")
	require.NoError(t, err)
	ws, err := eng.Watermarks()
	require.NoError(t, err)
	b, err := json.Marshal(append(out, cs, ws))
	require.NoError(t, err)
	return b
}

// pageAll lists every suppression (of one reason, or all) page by page.
func pageAll(t *testing.T, eng *engine.Engine, reason string, limit int) []engine.Suppression {
	t.Helper()
	out := []engine.Suppression{}
	after := ""
	for {
		page, next, err := eng.Suppressions(reason, after, limit)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), limit)
		out = append(out, page...)
		if next == "" {
			return out
		}
		require.Len(t, page, limit)
		after = next
	}
}

func TestFunnelResolveAccount(t *testing.T) {
	l := storagetest.New(t)
	mk := func(acct, camp string) event.Event {
		return event.Event{Source: "sp", Provider: "sendpulse", ProviderEvent: "delivered", Type: event.Delivered,
			Account: acct, Campaign: camp, Recipient: "a@b.c", RecipientDomain: "b.c", EventTime: base, ReceivedTime: base}
	}
	_, err := l.AppendCtx(mk("x", "c1"), mk("y", "c1"), mk("x", "c2"))
	require.NoError(t, err)
	eng, err := engine.Open(engine.DefaultConfig(t.TempDir()), l)
	require.NoError(t, err)
	defer eng.Close()
	require.NoError(t, eng.CatchUp(context.Background(), nil))

	_, err = eng.Funnel(engine.CampaignRef{Source: "sp", Campaign: "c1"}, engine.Range{})
	var amb *engine.AmbiguousError
	require.ErrorAs(t, err, &amb)
	require.Equal(t, []string{"x", "y"}, amb.Accounts)

	f, err := eng.Funnel(engine.CampaignRef{Source: "sp", Campaign: "c2"}, engine.Range{})
	require.NoError(t, err)
	require.Equal(t, "x", f.Account)
	require.EqualValues(t, 1, f.Stages["delivered"].Recipients)
	require.InDelta(t, 1.0, f.Rates["delivery"], 1e-12)

	_, err = eng.Funnel(engine.CampaignRef{Source: "sp", Campaign: "nope"}, engine.Range{})
	require.ErrorIs(t, err, engine.ErrNotFound)

	cs, err := eng.Campaigns("")
	require.NoError(t, err)
	require.Len(t, cs, 3)
	require.Equal(t, engine.CampaignInfo{Source: "sp", Account: "x", Campaign: "c1", FirstEvent: base, LastEvent: base, Events: 1}, cs[0])
}

func TestRunFollowsLog(t *testing.T) {
	l := storagetest.New(t)
	eng, err := engine.Open(engine.DefaultConfig(t.TempDir()), l)
	require.NoError(t, err)
	defer eng.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 5; i++ {
		res, err := l.AppendCtx(randomStream(rng, 20)...)
		require.NoError(t, err)
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, eng.WaitApplied(wctx, res.LastSeq))
		wcancel()
	}
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, l.LastSeq(), eng.Applied())
	require.Zero(t, eng.Lag())
}

// A backlog of microsecond-dated events makes minute counters with one
// detail entry per event: what one transaction stages grows with the
// values, not only with the keys, and past Badger's limit (15% of the
// memtable) state and checkpoint could not commit together. The engine
// commits early on a byte budget; this checks, with the budget shrunk,
// that its estimate is an upper bound of what every commit staged, that
// the budget (not BatchEvents) ended the transactions, and that the
// answers are those of one big transaction.
func TestCommitsStayWithinTransactionBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	stream := randomStream(rng, 3000)
	for i := range stream {
		// All in one minute, each at its own microsecond.
		stream[i].EventTime = base.Add(time.Duration(i)*time.Microsecond + time.Duration(rng.IntN(1000))*time.Microsecond)
	}
	eng, l := catchUpWithinBytes(t, 16<<10, stream)

	events := accepted(t, l)
	for _, c := range []string{"c0", "c1", "c2"} {
		ref := engine.CampaignRef{Source: "sp", Account: "a1", Campaign: c}
		for _, r := range []engine.Range{{}, {From: base.Add(700 * time.Microsecond), To: base.Add(2100 * time.Microsecond)}} {
			f, err := eng.Funnel(ref, r)
			require.NoError(t, err)
			require.Equal(t, naiveFunnel(events, ref, r), flatten(f), "%s %v", c, r)
		}
	}
}

// Recipient records grow with their bounce groups and soft bounces; the
// byte estimate must follow them. Here each recipient bounces softly 30
// times, four days apart (never three within the suppression window, so
// every soft bounce is kept), each reply naming another MX host (a new
// group each time).
func TestCommitsStayWithinTransactionBytes_GrowingRecords(t *testing.T) {
	var evs []event.Event
	for j := 0; j < 30; j++ {
		for i := 0; i < 300; i++ {
			r := fmt.Sprintf("someone.with.a.long.name%d@example-domain.com", i)
			evs = append(evs, event.Event{
				SMTPCode: 452, SMTPStatus: "4.2.2",
				SMTPResponse: fmt.Sprintf("host mx%d.example-domain.com[1.2.3.4] said: 452 4.2.2 Mailbox full", j),
				Source:       "sp", Provider: "sendpulse", ProviderEvent: "soft_bounce", Type: event.SoftBounce,
				Account: "a1", Campaign: fmt.Sprintf("c%d", j%4), Recipient: r, RecipientDomain: event.Domain(r),
				EventTime: base.Add(time.Duration(j) * 4 * 24 * time.Hour).Add(time.Duration(i) * time.Microsecond), ReceivedTime: base,
				MessageID: fmt.Sprint(i, "-", j),
			})
		}
	}
	catchUpWithinBytes(t, 64<<10, evs)
}

// catchUpWithinBytes applies events in one catch-up with the transaction
// byte budget set to budget, and checks that the budget split it into
// several commits, none of which staged more than estimated.
func catchUpWithinBytes(t *testing.T, budget int, events []event.Event) (*engine.Engine, *storage.Log) {
	t.Helper()
	commits := 0
	restore := engine.SetStagedSizeHook(budget, func(staged, estimate int) {
		commits++
		if staged > estimate {
			t.Errorf("commit staged %d bytes, estimated %d", staged, estimate)
		}
	})
	defer restore()
	l := storagetest.New(t)
	_, err := l.AppendCtx(events...)
	require.NoError(t, err)
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.BatchEvents = 1_000_000
	eng, err := engine.Open(cfg, l)
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close() })
	require.NoError(t, eng.CatchUp(context.Background(), nil))
	require.Greater(t, commits, 3, "the byte budget should have split the catch-up")
	return eng, l
}

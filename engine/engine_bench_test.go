package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

// benchStream is a realistic mix: a campaign send produces events at about
// 1,000/s of event time, most are deliveries and opens, some bounce.
func benchStream(n, recipients, campaigns int) []event.Event {
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []event.Type{event.Sent, event.Delivered, event.Delivered, event.Opened, event.Opened, event.Clicked,
		event.SoftBounce, event.HardBounce, event.Unsubscribed, event.Complained}
	out := make([]event.Event, n)
	for i := range out {
		r := fmt.Sprintf("user%d@example%d.com", rng.IntN(recipients), rng.IntN(50))
		typ := kinds[rng.IntN(len(kinds))]
		e := event.Event{
			Source: "sendpulse", Provider: "sendpulse", ProviderEvent: typ.String(), Type: typ,
			Account: "sendpulse", Campaign: fmt.Sprint(17000000 + rng.IntN(campaigns)), Recipient: r,
			RecipientDomain: event.Domain(r), MessageID: fmt.Sprint(i),
			EventTime:    base.Add(time.Duration(i) * time.Millisecond).Add(time.Duration(rng.IntN(60_000)) * time.Millisecond).Truncate(time.Second),
			ReceivedTime: base,
		}
		if typ.IsBounce() {
			e.SMTPCode, e.SMTPStatus, e.SMTPResponse = 550, "5.1.1", "MX: mx.example.com RESP: 5.1.1 User unknown in local recipient table"
		}
		out[i] = e
	}
	return out
}

// BenchmarkEngine_Rebuild measures the engine's apply rate over a log that
// is already written, as 'mailfunnel rebuild' does.
//
//	go test ./engine -run '^$' -bench BenchmarkEngine_Rebuild -benchtime 1x -count 5
func BenchmarkEngine_Rebuild(b *testing.B) {
	const n = 500_000
	cfg := storage.DefaultConfig(b.TempDir())
	cfg.NoSync = true
	log, err := storage.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	events := benchStream(n, 100_000, 20)
	for i := 0; i < n; i += 10_000 {
		if _, err := log.AppendCtx(events[i:min(n, i+10_000)]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		eng, err := engine.Open(engine.DefaultConfig(dir).ForBulk(dir), log)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := eng.CatchUp(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		st := eng.Stats()
		b.ReportMetric(float64(st.Keys)/float64(n), "keys/event")
		b.ReportMetric(float64(st.Commits), "commits")
		b.StopTimer()
		eng.Close()
		b.StartTimer()
	}
}

package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/pprof"
	"syscall"
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

// emblueStream is what the load generator posts in emBlue mode: one
// event per millisecond of event time, in order, at microsecond precision,
// over 20 campaigns, six activities and one domain. The busiest series
// (every campaign's deliveries to the domain) count about 170 distinct
// microseconds a second.
func emblueStream(n int) []event.Event {
	rng := rand.New(rand.NewPCG(5, 6))
	kinds := []event.Type{event.Sent, event.Opened, event.Clicked, event.HardBounce, event.Unsubscribed, event.Complained}
	out := make([]event.Event, n)
	for i := range out {
		r := fmt.Sprintf("user%d@example.com", rng.IntN(100_000))
		typ := kinds[rng.IntN(len(kinds))]
		e := event.Event{
			Source: "emblue", Provider: "emblue", ProviderEvent: typ.String(), Type: typ,
			Account: "1001", Campaign: fmt.Sprint(555000 + rng.IntN(20)), Recipient: r,
			RecipientDomain: "example.com", MessageID: fmt.Sprint(i),
			EventTime:    base.Add(time.Duration(i)*time.Millisecond + time.Duration(rng.IntN(1000))*time.Microsecond),
			ReceivedTime: base,
		}
		if typ.IsBounce() {
			e.SMTPCode, e.SMTPStatus, e.SMTPResponse = 550, "5.1.1", "5.1.1 User unknown"
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
		start, cpu0 := time.Now(), cpuTime(b)
		if err := eng.CatchUp(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(n), "cpu-ns/event")
		st := eng.Stats()
		b.ReportMetric(float64(st.Keys)/float64(n), "keys/event")
		b.ReportMetric(float64(st.Commits), "commits")
		b.StopTimer()
		eng.Close()
		b.StartTimer()
	}
}

// stepLog is a log whose end is moved by hand, so that a benchmark can feed
// an already written log to CatchUp in the slices live ingest would: each
// CatchUp applies up to LastSeq and commits.
type stepLog struct {
	*storage.Log
	last uint64
}

func (l *stepLog) LastSeq() uint64 { return l.last }

// cpuTime is the process's user plus system CPU time: on a noisy shared
// machine it moves less than wall time, and it includes Badger's own
// goroutines (compaction, value log), which are part of the cost.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEngine_Follow measures the normal (live) mode: the default
// Config, one atomic state+checkpoint transaction per commit. step=2400 is
// live ingest at 120k events/s with a 20 ms CommitInterval (a CatchUp per
// 2,400 events), step=400 single-event webhooks at 20k a second; step=all is one CatchUp over the whole log (a restart
// after downtime: commits every BatchEvents). precision=us has microsecond
// event times instead of SendPulse's seconds; precision=emblue is the load
// generator's emBlue stream (emblueStream). cpu-ns/event is
// the process's CPU time per event.
//
//	go test ./engine -run '^$' -bench BenchmarkEngine_Follow -benchtime 1x -count 3
func BenchmarkEngine_Follow(b *testing.B) {
	const n = 300_000
	for _, prec := range []string{"s", "us", "emblue"} {
		cfg := storage.DefaultConfig(b.TempDir())
		cfg.NoSync = true
		log, err := storage.Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		events := benchStream(n, 100_000, 20)
		if prec == "emblue" {
			events = emblueStream(n)
		}
		if prec == "us" {
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range events {
				events[i].Source, events[i].Provider = "emblue", "emblue"
				events[i].EventTime = events[i].EventTime.Add(time.Duration(rng.IntN(1_000_000)) * time.Microsecond)
			}
		}
		for i := 0; i < n; i += 10_000 {
			if _, err := log.AppendCtx(events[i:min(n, i+10_000)]...); err != nil {
				b.Fatal(err)
			}
		}
		for _, step := range []int{400, 2400, n} {
			name := fmt.Sprint("step=", step)
			if step == n {
				name = "step=all"
			}
			b.Run(fmt.Sprintf("precision=%s/%s", prec, name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					src := &stepLog{Log: log}
					var eng *engine.Engine
					var wall, cpu time.Duration
					// The label marks the engine's goroutines, and those
					// Badger starts for its state store, so that
					// -tagfocus phase=engine leaves the log's setup out of
					// a -cpuprofile.
					pprof.Do(context.Background(), pprof.Labels("phase", "engine"), func(ctx context.Context) {
						var err error
						if eng, err = engine.Open(engine.DefaultConfig(b.TempDir()), src); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
						start, cpu0 := time.Now(), cpuTime(b)
						for src.last < uint64(n) {
							src.last = min(uint64(n), src.last+uint64(step))
							if err := eng.CatchUp(ctx, nil); err != nil {
								b.Fatal(err)
							}
						}
						wall, cpu = time.Since(start), cpuTime(b)-cpu0
					})
					b.ReportMetric(float64(n)/wall.Seconds(), "events/s")
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/event")
					st := eng.Stats()
					b.ReportMetric(float64(st.Keys)/float64(n), "keys/event")
					b.StopTimer()
					eng.Close()
					b.StartTimer()
				}
			})
		}
		log.Close()
	}
}

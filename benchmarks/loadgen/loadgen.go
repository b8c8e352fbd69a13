// Package loadgen posts generated webhook traffic at a mailfunnel server
// (or any server with the same endpoints) and measures throughput and
// latency. Every event it sends is unique, so the server's append path is
// measured and not its dedupe shortcut.
//
// It uses fasthttp's client over keep-alive connections because the load
// generator shares the machine with the server: a lighter client leaves
// more CPU to what is measured.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Mode selects the traffic shape.
type Mode string

const (
	// SendPulse posts JSON arrays of BatchSize events.
	SendPulse Mode = "sendpulse"
	// EmBlue posts one JSON object per request, as emBlue does.
	EmBlue Mode = "emblue"
)

// Config configures a run. Zero values mean the defaults.
type Config struct {
	// Addr is the server's host:port. Required.
	Addr string
	// Path overrides the webhook path (default /v1/webhooks/<mode>).
	Path string
	// Token is the ingest token, sent as a bearer token.
	Token string
	Mode  Mode
	// BatchSize is the events per SendPulse request. Default 500.
	BatchSize int
	// Connections is the number of concurrent keep-alive connections, each
	// with one request in flight. Default 64.
	Connections int
	// Duration bounds the run. Default 10s unless Requests is set.
	Duration time.Duration
	// Requests, if > 0, stops the run after that many requests.
	Requests int64
	// Campaigns and Recipients shape the generated data. Defaults 20 and
	// 100,000.
	Campaigns, Recipients int
	// Seed makes the generated events reproducible; runs with different
	// seeds generate different events.
	Seed uint64
	// Probe, if set, measures freshness while the load runs: how long an
	// acknowledged event takes to show in GET /v1/funnel. Nil: no probe
	// (for servers without the query API, such as the ceiling).
	Probe *Probe
}

func (c *Config) fill() {
	if c.Mode == "" {
		c.Mode = SendPulse
	}
	if c.Path == "" {
		c.Path = "/v1/webhooks/" + string(c.Mode)
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.Connections == 0 {
		c.Connections = 64
	}
	if c.Duration == 0 && c.Requests == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Campaigns == 0 {
		c.Campaigns = 20
	}
	if c.Recipients == 0 {
		c.Recipients = 100_000
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
}

// Result summarises a run.
type Result struct {
	Requests   int64         `json:"requests"`
	Events     int64         `json:"events"`
	Non2xx     int64         `json:"non_2xx"`
	Errors     int64         `json:"errors"`
	Elapsed    time.Duration `json:"elapsed"`
	EventsPerS float64       `json:"events_per_s"`
	ReqPerS    float64       `json:"requests_per_s"`
	P50        time.Duration `json:"p50"`
	P99        time.Duration `json:"p99"`
	P999       time.Duration `json:"p999"`
	Max        time.Duration `json:"max"`
	// Freshness is the probe's result when Config.Probe is set.
	Freshness *ProbeResult `json:"freshness,omitempty"`
}

func (r Result) String() string {
	s := fmt.Sprintf("%d requests, %d events in %v: %.0f events/s, %.0f req/s, p50 %v p99 %v p99.9 %v max %v, non-2xx %d, errors %d",
		r.Requests, r.Events, r.Elapsed.Round(time.Millisecond), r.EventsPerS, r.ReqPerS,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.P999.Round(time.Microsecond), r.Max.Round(time.Microsecond),
		r.Non2xx, r.Errors)
	if r.Freshness != nil {
		s += "; freshness " + r.Freshness.String()
	}
	return s
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1) of sorted: the
// smallest value with at least q of the values at or below it. Zero for no
// values.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(len(sorted)-1, i))]
}

// Run generates load until the duration or request count is reached, or
// ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.fill()
	if cfg.Addr == "" {
		return Result{}, errors.New("loadgen: Addr is required")
	}
	if cfg.Mode != SendPulse && cfg.Mode != EmBlue {
		return Result{}, fmt.Errorf("loadgen: unknown mode %q", cfg.Mode)
	}
	if cfg.Probe != nil {
		if err := cfg.Probe.fill(cfg.Mode); err != nil {
			return Result{}, err
		}
	}
	client := &fasthttp.HostClient{Addr: cfg.Addr, MaxConns: cfg.Connections, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	// The probe stops taking new samples when the load stops (ctx ends or
	// the request count is reached).
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probeDone := make(chan ProbeResult, 1)
	if cfg.Probe != nil {
		go func() { probeDone <- runProbe(probeCtx, &cfg) }()
	}
	var sent atomic.Int64
	var seq atomic.Uint64 // unique event numbers across workers
	lat := make([][]time.Duration, cfg.Connections)
	var res Result
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < cfg.Connections; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			g := generator{cfg: &cfg, rng: rng, seq: &seq}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var local Result
			for ctx.Err() == nil {
				if cfg.Requests > 0 && sent.Add(1) > cfg.Requests {
					break
				}
				req.Reset()
				req.SetRequestURI("http://" + cfg.Addr + cfg.Path)
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetContentType("application/json")
				req.Header.Set("Authorization", "Bearer "+cfg.Token)
				body, n := g.body(req.SwapBody(nil)[:0])
				req.SetBodyRaw(body)
				t := time.Now()
				err := client.Do(req, resp)
				lat[w] = append(lat[w], time.Since(t))
				local.Requests++
				switch {
				case err != nil:
					local.Errors++
				case resp.StatusCode() != 200:
					local.Non2xx++
				default:
					local.Events += int64(n)
				}
			}
			mu.Lock()
			res.Requests += local.Requests
			res.Events += local.Events
			res.Errors += local.Errors
			res.Non2xx += local.Non2xx
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	res.P50, res.P99, res.P999, res.Max = Quantile(all, 0.5), Quantile(all, 0.99), Quantile(all, 0.999), Quantile(all, 1)
	res.EventsPerS = float64(res.Events) / res.Elapsed.Seconds()
	res.ReqPerS = float64(res.Requests) / res.Elapsed.Seconds()
	if cfg.Probe != nil {
		stopProbe()
		pr := <-probeDone
		res.Freshness = &pr
	}
	return res, nil
}

// generator appends unique, realistic webhook bodies.
type generator struct {
	cfg *Config
	rng *rand.Rand
	seq *atomic.Uint64
}

var spEvents = []string{"delivered", "delivered", "delivered", "opened", "opened", "clicked", "soft_bounces", "hard_bounces", "unsubscribed", "spam_by_user"}

const bounceText = `550 5.1.1 <user@example.com>: Recipient address rejected: User unknown in local recipient table`

func (g *generator) body(b []byte) ([]byte, int) {
	base := int64(1_790_000_000)
	if g.cfg.Mode == EmBlue {
		n := g.seq.Add(1)
		b = append(b, `{"account_id":1001,"action_id":`...)
		b = strconv.AppendInt(b, int64(555000+g.rng.IntN(g.cfg.Campaigns)), 10)
		b = append(b, `,"type_id":1,"activity_id":`...)
		b = strconv.AppendInt(b, int64(1+g.rng.IntN(6)), 10)
		b = append(b, `,"email":"user`...)
		b = strconv.AppendInt(b, int64(g.rng.IntN(g.cfg.Recipients)), 10)
		b = append(b, `@example.com","timestamp":"2026-11-23 10:`...)
		// Event time advances 1 ms per event: a large send produces about
		// 1,000 events per second, not events spread over a whole day.
		us := n * 1000
		m, s, us := us/60_000_000%60, us/1_000_000%60, us%1_000_000
		b = append(b, byte('0'+m/10), byte('0'+m%10), ':', byte('0'+s/10), byte('0'+s%10), '.')
		b = append(b, fmt.Sprintf("%06d", us)...)
		b = append(b, `"}`...)
		return b, 1
	}
	b = append(b, '[')
	for i := 0; i < g.cfg.BatchSize; i++ {
		n := g.seq.Add(1)
		if i > 0 {
			b = append(b, ',')
		}
		ev := spEvents[g.rng.IntN(len(spEvents))]
		b = append(b, `{"event":"`...)
		b = append(b, ev...)
		b = append(b, `","timestamp":`...)
		b = strconv.AppendInt(b, base+int64(n/1000), 10) // about 1,000 events per second of event time
		b = append(b, `,"message_id":`...)
		b = strconv.AppendUint(b, n, 10)
		b = append(b, `,"email":"user`...)
		b = strconv.AppendInt(b, int64(g.rng.IntN(g.cfg.Recipients)), 10)
		b = append(b, `@example.com","task_id":`...)
		b = strconv.AppendInt(b, int64(17000000+g.rng.IntN(g.cfg.Campaigns)), 10)
		if ev == "soft_bounces" || ev == "hard_bounces" {
			b = append(b, `,"smtp_server_response_code":550,"smtp_server_response_subcode":"5.1.1","smtp_server_response":"`...)
			b = append(b, bounceText...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	return b, g.cfg.BatchSize
}

package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// Probe configures the freshness probe: while the load runs, it posts one
// event at a time to a campaign of its own, and after the 200 polls
// GET /v1/funnel for that campaign until the event is counted. The time
// from the 200 to the first answer that counts the event is one sample.
//
// Probes run one after the other (at most one in flight), so the probe adds
// at most one webhook per Every and one funnel query per Poll to the load.
// A probe acknowledged before the load stops is followed to the end (at
// most Timeout), so the last sample may be taken after the load stopped.
type Probe struct {
	// APIToken is the query API's token. Required.
	APIToken string
	// Source is the source the probe's events land in, the funnel query's
	// source parameter. Default: the mode's provider name, which is the
	// source of /v1/webhooks/<provider>; set it when Config.Path names
	// another source.
	Source string
	// Every is the time from one probe's start to the next one's. Default
	// 100ms. A probe that takes longer delays the next.
	Every time.Duration
	// Poll is the pause between funnel queries for the first 100ms after
	// the acknowledgement. Default 1ms. After that the pause grows to
	// 10 x Poll: a probe behind a lagging engine would otherwise poll a
	// thousand times a second for seconds, taking CPU from the load it
	// measures; the samples it delays are far past the 100 ms target, and
	// at most 10 x Poll late.
	Poll time.Duration
	// Timeout bounds one probe; a probe not visible by then counts in
	// ProbeResult.Lost, and as Timeout (a lower bound of its freshness) in
	// the quantiles. Default 10s.
	Timeout time.Duration
}

func (p *Probe) fill(mode Mode) error {
	if p.APIToken == "" {
		return errors.New("loadgen: Probe.APIToken is required")
	}
	if p.Source == "" {
		p.Source = string(mode)
	}
	if p.Every == 0 {
		p.Every = 100 * time.Millisecond
	}
	if p.Poll == 0 {
		p.Poll = time.Millisecond
	}
	if p.Timeout == 0 {
		p.Timeout = 10 * time.Second
	}
	return nil
}

// ProbeResult summarises the freshness samples of a run.
type ProbeResult struct {
	// Samples is the number of probes that became visible.
	Samples int `json:"samples"`
	// Lost counts acknowledged probes not visible within Probe.Timeout.
	Lost int `json:"lost"`
	// Failed counts probes whose post or query failed: a transport error
	// or a status other than 200 (while polling, 404 only means "not yet").
	Failed int `json:"failed"`
	// P50, P99 and Max are ack-to-visible times over the samples and the
	// lost probes, these counted as Probe.Timeout.
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
	// Latencies are the quantiles' values, sorted, for pooling the
	// samples of several runs.
	Latencies []time.Duration `json:"latencies"`
}

func (r ProbeResult) String() string {
	return fmt.Sprintf("%d samples: p50 %v p99 %v max %v, lost %d, failed %d",
		r.Samples, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.Lost, r.Failed)
}

// runProbe takes samples until ctx ends; cfg has been filled.
func runProbe(ctx context.Context, cfg *Config) ProbeResult {
	p := cfg.Probe
	client := &fasthttp.HostClient{Addr: cfg.Addr, MaxConns: 2, ReadTimeout: p.Timeout, WriteTimeout: p.Timeout}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var res ProbeResult
	var lat []time.Duration
	tick := time.NewTicker(p.Every)
	defer tick.Stop()
	for i := uint64(0); ; i++ {
		select {
		case <-ctx.Done():
			slices.Sort(lat)
			res.Samples = len(lat) - res.Lost
			res.P50, res.P99, res.Max = Quantile(lat, 0.5), Quantile(lat, 0.99), Quantile(lat, 1)
			res.Latencies = lat
			return res
		case <-tick.C:
		}
		// Campaign ids of their own, apart from the generated ones
		// (17000000+ and 555000+), distinct per seed.
		campaign := strconv.FormatUint(9_000_000_000_000+cfg.Seed%1_000_000*1_000_000+i, 10)
		req.Reset()
		req.SetRequestURI("http://" + cfg.Addr + cfg.Path)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
		req.SetBodyRaw(probeBody(cfg.Mode, campaign, time.Now()))
		if err := client.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusOK {
			res.Failed++
			continue
		}
		acked := time.Now()
		query := "http://" + cfg.Addr + "/v1/funnel?source=" + url.QueryEscape(p.Source) + "&campaign=" + campaign
		for {
			visible, err := funnelCounts(client, req, resp, query, p.APIToken)
			if err != nil {
				res.Failed++
				break
			}
			if visible {
				lat = append(lat, time.Since(acked))
				break
			}
			if time.Since(acked) > p.Timeout {
				res.Lost++
				lat = append(lat, p.Timeout)
				break
			}
			if time.Since(acked) < 100*time.Millisecond {
				time.Sleep(p.Poll)
			} else {
				time.Sleep(10 * p.Poll)
			}
		}
	}
}

// probeBody is one event of the mode's provider for campaign, dated now.
func probeBody(mode Mode, campaign string, now time.Time) []byte {
	now = now.UTC()
	if mode == EmBlue {
		return fmt.Appendf(nil, `{"account_id":1001,"action_id":%s,"type_id":1,"activity_id":1,"email":"probe@example.com","timestamp":%q}`,
			campaign, now.Format("2006-01-02 15:04:05.000000"))
	}
	return fmt.Appendf(nil, `[{"event":"delivered","timestamp":%d,"message_id":"probe-%s","email":"probe@example.com","task_id":%s}]`,
		now.Unix(), campaign, campaign)
}

// funnelCounts asks for the funnel at query and reports whether it counts
// any event: false while the campaign is unknown (404).
func funnelCounts(client *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, query, token string) (bool, error) {
	req.Reset()
	req.SetRequestURI(query)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.Header.Set("Authorization", "Bearer "+token)
	if err := client.Do(req, resp); err != nil {
		return false, err
	}
	switch resp.StatusCode() {
	case fasthttp.StatusNotFound:
		return false, nil
	case fasthttp.StatusOK:
	default:
		return false, fmt.Errorf("GET %s: status %d: %.200s", query, resp.StatusCode(), resp.Body())
	}
	var f struct {
		Stages, Outcomes map[string]struct {
			Events int64 `json:"events"`
		}
	}
	if err := json.Unmarshal(resp.Body(), &f); err != nil {
		return false, fmt.Errorf("GET %s: %w", query, err)
	}
	var n int64
	for _, c := range f.Stages {
		n += c.Events
	}
	for _, c := range f.Outcomes {
		n += c.Events
	}
	return n > 0, nil
}

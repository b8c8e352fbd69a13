package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailfunnel/mailfunnel/benchmarks/loadgen"
)

// measurement is one run: one target under one workload in one round.
type measurement struct {
	Workload string         `json:"workload"`
	Target   string         `json:"target"`
	Round    int            `json:"round"`
	Result   loadgen.Result `json:"result"`
	// CPU is the CPU time (user + system) the server used during the load.
	CPU time.Duration `json:"cpu"`
	// RSSSteady is the median RSS of the load's second half, RSSPeak the
	// process's VmHWM, in bytes.
	RSSSteady int64 `json:"rss_steady"`
	RSSPeak   int64 `json:"rss_peak"`
	// Lag is mailfunnel's engine lag in events when the load stopped; -1
	// for other targets or when it could not be read.
	Lag int64 `json:"lag"`
}

// summary is the medians of one target under one workload.
type summary struct {
	target         string
	runs           []measurement
	eventsPerSRuns []float64
	// Medians over the runs; errors and freshness counts are sums,
	// freshness quantiles are over the pooled samples, the peak RSS is the
	// largest.
	eventsPerS, reqPerS                float64
	p50, p99, p999                     time.Duration
	cpuPerEvent                        time.Duration // server CPU time per acknowledged event
	cores                              float64       // server CPU time over the run's length
	non2xx, errors                     int64
	rssSteady, rssPeak                 int64
	fresh                              bool // the runs probed freshness
	freshP50, freshP99                 time.Duration
	freshSamples, freshLost, freshFail int
	lag                                int64 // -1: not known
}

func summarize(target string, runs []measurement) summary {
	s := summary{target: target, runs: runs, lag: -1}
	var eps, rps []float64
	var p50, p99, p999, fresh []time.Duration
	var steady, lags []int64
	var cpe []time.Duration
	var cores []float64
	for _, r := range runs {
		res := r.Result
		eps = append(eps, res.EventsPerS)
		rps = append(rps, res.ReqPerS)
		p50, p99, p999 = append(p50, res.P50), append(p99, res.P99), append(p999, res.P999)
		s.non2xx += res.Non2xx
		s.errors += res.Errors
		steady = append(steady, r.RSSSteady)
		if res.Events > 0 {
			cpe = append(cpe, r.CPU/time.Duration(res.Events))
		}
		cores = append(cores, ratio(r.CPU.Seconds(), res.Elapsed.Seconds()))
		s.rssPeak = max(s.rssPeak, r.RSSPeak)
		if r.Lag >= 0 {
			lags = append(lags, r.Lag)
		}
		if f := res.Freshness; f != nil {
			s.fresh = true
			s.freshSamples += f.Samples
			s.freshLost += f.Lost
			s.freshFail += f.Failed
			fresh = append(fresh, f.Latencies...)
		}
	}
	s.eventsPerSRuns = eps
	s.eventsPerS, s.reqPerS = median(eps), median(rps)
	s.p50, s.p99, s.p999 = median(p50), median(p99), median(p999)
	s.rssSteady = median(steady)
	s.cpuPerEvent, s.cores = median(cpe), median(cores)
	// Freshness pools the samples of all runs: a run has few of them when
	// freshness is long (probes run one at a time).
	slices.Sort(fresh)
	s.freshP50, s.freshP99 = loadgen.Quantile(fresh, 0.5), loadgen.Quantile(fresh, 0.99)
	if len(lags) > 0 {
		s.lag = median(lags)
	}
	return s
}

// median is the middle value, the lower of the two middle ones for an even
// count; zero for none.
func median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[(len(v)-1)/2]
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// roundRatios are target a's events/s over target b's, round by round: each
// pair was measured minutes apart at most, in the same invocation.
func roundRatios(a, b []measurement) []float64 {
	var out []float64
	for _, x := range a {
		for _, y := range b {
			if x.Round == y.Round {
				out = append(out, ratio(x.Result.EventsPerS, y.Result.EventsPerS))
			}
		}
	}
	return out
}

// table writes the markdown table of one workload; sums[0] is mailfunnel.
func table(w *strings.Builder, title string, sums []summary) {
	fmt.Fprintf(w, "#### %s\n\n", title)
	w.WriteString("| target | events/s (median) | runs (events/s) | req/s | p50 | p99 | p99.9 | non-2xx / errors | server CPU per event (cores) | RSS steady / peak | freshness p50 / p99 (samples) |\n")
	w.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range sums {
		runs := make([]string, len(s.eventsPerSRuns))
		for i, v := range s.eventsPerSRuns {
			runs[i] = thousands(v)
		}
		fresh := "n/a"
		if s.fresh {
			fresh = fmt.Sprintf("%s / %s (%d", ms(s.freshP50), ms(s.freshP99), s.freshSamples)
			if s.freshLost > 0 || s.freshFail > 0 {
				fresh += fmt.Sprintf(", %d lost, %d failed", s.freshLost, s.freshFail)
			}
			fresh += ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %d / %d | %s (%.2f) | %s / %s | %s |\n",
			s.target, thousands(s.eventsPerS), strings.Join(runs, " / "), thousands(s.reqPerS),
			ms(s.p50), ms(s.p99), ms(s.p999), s.non2xx, s.errors, us(s.cpuPerEvent), s.cores,
			mib(s.rssSteady), mib(s.rssPeak), fresh)
	}
	w.WriteString("\n")
	mf := sums[0]
	for _, s := range sums[1:] {
		rr := roundRatios(mf.runs, s.runs)
		parts := make([]string, len(rr))
		for i, v := range rr {
			parts[i] = fmt.Sprintf("%.3f", v)
		}
		fmt.Fprintf(w, "- %s / %s (events/s, medians): **%.3f** (round by round: %s)\n",
			mf.target, s.target, ratio(mf.eventsPerS, s.eventsPerS), strings.Join(parts, ", "))
	}
	if mf.lag >= 0 {
		fmt.Fprintf(w, "- %s engine lag when the load stopped (median): %s events\n", mf.target, thousands(float64(mf.lag)))
	}
	w.WriteString("\n")
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f ms", float64(d)/1e6)
}

func us(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/1e3)
}

func mib(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// thousands formats v rounded to an integer with comma separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

const (
	beginMarker = "<!-- bench-ingest:begin -->"
	endMarker   = "<!-- bench-ingest:end -->"
)

// replaceSection returns doc with the text between the bench-ingest
// markers replaced by section, or with the markers and section appended
// when doc has none. A begin marker without an end marker is an error: the
// rest of the document would be lost.
func replaceSection(doc, section string) (string, error) {
	section = "\n" + strings.Trim(section, "\n") + "\n"
	i := strings.Index(doc, beginMarker)
	if i < 0 {
		if strings.Contains(doc, endMarker) {
			return "", fmt.Errorf("%s without %s", endMarker, beginMarker)
		}
		sep := "\n"
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			sep = "\n\n"
		}
		return doc + sep + beginMarker + section + endMarker + "\n", nil
	}
	j := strings.Index(doc[i:], endMarker)
	if j < 0 {
		return "", fmt.Errorf("%s without %s", beginMarker, endMarker)
	}
	return doc[:i+len(beginMarker)] + section + doc[i+j:], nil
}

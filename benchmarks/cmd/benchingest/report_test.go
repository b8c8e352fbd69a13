package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mailfunnel/mailfunnel/benchmarks/loadgen"
)

func TestReplaceSection(t *testing.T) {
	const b, e = beginMarker, endMarker
	for _, tc := range []struct {
		name, doc, want string
		wantErr         bool
	}{
		{name: "empty doc", doc: "", want: "\n" + b + "\nnew\n" + e + "\n"},
		{name: "appended after a final newline", doc: "# R\n", want: "# R\n\n" + b + "\nnew\n" + e + "\n"},
		{name: "appended without a final newline", doc: "# R", want: "# R\n\n" + b + "\nnew\n" + e + "\n"},
		{name: "replaced, text around kept", doc: "a\n" + b + "\nold\nold\n" + e + "\nz\n", want: "a\n" + b + "\nnew\n" + e + "\nz\n"},
		{name: "empty section replaced", doc: b + e, want: b + "\nnew\n" + e},
		{name: "begin without end", doc: "a\n" + b + "\nold\n", wantErr: true},
		{name: "end without begin", doc: "a\n" + e + "\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replaceSection(tc.doc, "\n\nnew\n\n")
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			// Replacing again is stable.
			again, err := replaceSection(got, "new")
			if err != nil || again != got {
				t.Fatalf("second replacement: got %q, %v; want %q", again, err, got)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2}, // lower middle
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	in := []time.Duration{3, 1, 2}
	if got := median(in); got != 2 || in[0] != 3 {
		t.Errorf("median(%v) = %v (and must not sort its argument)", in, got)
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 123456.6: "123,457", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestParseStatusField(t *testing.T) {
	status := []byte("Name:\tmailfunnel\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t12\n")
	for _, tc := range []struct {
		field   string
		want    int64
		wantErr bool
	}{
		{field: "VmRSS", want: 100 << 20},
		{field: "VmHWM", want: 200 << 20},
		{field: "Threads", wantErr: true}, // no kB unit
		{field: "VmSwap", wantErr: true},
	} {
		got, err := parseStatusField(status, tc.field)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d, error %v", tc.field, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 50 ticks; the command
	// name holds a space and a parenthesis.
	stat := []byte("4242 (my (server)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 0 0")
	got, err := parseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Fatalf("got %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Fatal("short stat line: want an error")
	}
}

func TestTable(t *testing.T) {
	mk := func(target string, round int, eps float64, fresh bool) measurement {
		r := measurement{Workload: "sendpulse", Target: target, Round: round, Lag: -1, RSSSteady: 50 << 20, RSSPeak: 60 << 20,
			CPU: 15 * time.Second,
			Result: loadgen.Result{EventsPerS: eps, ReqPerS: eps / 500, P50: time.Millisecond, P99: 20 * time.Millisecond, P999: 200 * time.Millisecond,
				Events: 1_000_000, Elapsed: 10 * time.Second}}
		if fresh {
			r.Lag = 10
			// 90 samples of 1..90 ms, plus 10 lost ones (at the 100 ms timeout)
			// in round 3: the pooled p50 is the 140th of 280 values, 47 ms.
			f := &loadgen.ProbeResult{Samples: 90}
			for i := range 90 {
				f.Latencies = append(f.Latencies, time.Duration(i+1)*time.Millisecond)
			}
			if round == 3 {
				f.Lost = 10
				for range 10 {
					f.Latencies = append(f.Latencies, 100*time.Millisecond)
				}
			}
			r.Result.Freshness = f
		}
		return r
	}
	mf := []measurement{mk("mailfunnel", 1, 100, true), mk("mailfunnel", 2, 120, true), mk("mailfunnel", 3, 110, true)}
	ceil := []measurement{mk("ceiling", 1, 1000, false), mk("ceiling", 2, 1000, false), mk("ceiling", 3, 1100, false)}
	var b strings.Builder
	table(&b, "SendPulse", []summary{summarize("mailfunnel", mf), summarize("ceiling", ceil)})
	got := b.String()
	for _, want := range []string{
		"| mailfunnel | 110 | 100 / 120 / 110 | 0 | 1.00 ms | 20.0 ms | 200 ms | 0 / 0 | 15.0 µs (1.50) | 50 MiB / 60 MiB | 47.0 ms / 100 ms (270, 10 lost, 0 failed) |",
		"| ceiling | 1,000 |",
		"| n/a |",
		"mailfunnel / ceiling (events/s, medians): **0.110** (round by round: 0.100, 0.120, 0.100)",
		"engine lag when the load stopped (median): 10 events",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

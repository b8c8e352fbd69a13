// Command benchingest runs the ingest comparison of make bench-ingest:
// mailfunnel (the built binary, fresh data dir each run), a Benthos
// http_server -> file pipeline (benchmarks/benthos, the peer) and a bare
// Fiber server that reads the body and answers 200 (benchmarks/cmd/ceiling),
// each as its own process, driven by benchmarks/loadgen from this process
// with the same configuration.
//
// The machine is two shared, noisy cores, so the targets alternate: every
// round runs each target once per workload (the order rotating from round
// to round), and the report gives medians per target and the ratios of
// mailfunnel to the others measured in the same invocation. For mailfunnel
// the freshness probe runs along (time from a 200 to the event counted in
// GET /v1/funnel). RSS is sampled every 100ms; the peak is the kernel's
// VmHWM. The CPU time each server used during the load, per event and in
// cores, is the least noise-sensitive figure on a shared machine: it does
// not count the time a server waited for a core.
//
//	make bench-ingest                                   # print the tables
//	make bench-ingest BENCH_RESULTS=benchmarks/RESULTS.md  # and replace the marked section
//	go run ./benchmarks/cmd/benchingest -h
package main

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/mailfunnel/mailfunnel/benchmarks/loadgen"
)

const (
	ingestToken = "bench-ingest-token"
	apiToken    = "bench-api-token"
)

// options are the command's flags.
type options struct {
	mailfunnel, peer, ceiling string
	targets, workloads        []string
	rounds                    int
	duration, pause, grace    time.Duration
	spBatch, spConns, ebConns int
	probeEvery, probePoll     time.Duration
	mailfunnelArgs            []string
	results, jsonOut          string
	command, commit           string
	tmp                       string
}

// target is a server under test.
type target struct {
	name  string
	bin   string
	args  func(addr, dir string) []string
	ready func(context.Context, string) error
	probe bool // has the query API: run the freshness probe
}

// workload is one load shape, run against every target.
type workload struct {
	name  string
	title string
	cfg   loadgen.Config
}

func main() {
	var o options
	var targets, workloads, mfArgs string
	flag.StringVar(&o.mailfunnel, "mailfunnel", "bin/mailfunnel", "mailfunnel binary")
	flag.StringVar(&o.peer, "peer", "bin/benthos-peer", "Benthos peer binary (built from benchmarks/benthos)")
	flag.StringVar(&o.ceiling, "ceiling", "bin/ceiling", "ceiling binary (built from benchmarks/cmd/ceiling)")
	flag.StringVar(&targets, "targets", "mailfunnel,benthos,ceiling", "targets to run, mailfunnel first")
	flag.StringVar(&workloads, "workloads", "sendpulse,emblue", "workloads to run")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds: each runs every target once per workload")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each run")
	flag.DurationVar(&o.pause, "pause", time.Second, "pause between runs")
	flag.DurationVar(&o.grace, "stop-grace", 3*time.Second, "how long a server may take to stop after SIGTERM before it is killed")
	flag.IntVar(&o.spBatch, "sp-batch", 500, "events per SendPulse request")
	flag.IntVar(&o.spConns, "sp-conns", 32, "connections of the SendPulse workload")
	flag.IntVar(&o.ebConns, "eb-conns", 64, "connections of the emBlue workload")
	flag.DurationVar(&o.probeEvery, "probe-every", 100*time.Millisecond, "interval between freshness probes (mailfunnel only)")
	flag.DurationVar(&o.probePoll, "probe-poll", time.Millisecond, "pause between a probe's funnel queries")
	flag.StringVar(&mfArgs, "mailfunnel-args", "", "extra arguments for 'mailfunnel serve', space separated")
	flag.StringVar(&o.results, "results", "", "if set, replace the bench-ingest section of this markdown file (benchmarks/RESULTS.md)")
	flag.StringVar(&o.jsonOut, "json", "", "if set, write every run's raw result to this file as JSON")
	flag.StringVar(&o.command, "command", "", "the command line to record in the results (default: this command's)")
	flag.StringVar(&o.commit, "commit", "", "the commit to record in the results")
	flag.StringVar(&o.tmp, "tmp", "", "parent of the runs' scratch dirs (default: the system's temp dir)")
	flag.Parse()
	o.targets = strings.Split(targets, ",")
	o.workloads = strings.Split(workloads, ",")
	o.mailfunnelArgs = strings.Fields(mfArgs)
	if o.command == "" {
		o.command = strings.Join(os.Args, " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	ts, err := o.buildTargets()
	if err != nil {
		return err
	}
	wls, err := o.buildWorkloads()
	if err != nil {
		return err
	}
	loadBefore := loadavg()
	start := time.Now()
	var all []measurement
	for _, wl := range wls {
		for round := 1; round <= o.rounds; round++ {
			for i := range ts {
				t := ts[(i+round-1)%len(ts)] // rotate the order
				r, err := o.measure(ctx, wl, t, round)
				if err != nil {
					return fmt.Errorf("%s, %s, round %d: %w", wl.name, t.name, round, err)
				}
				fmt.Fprintf(os.Stderr, "%s round %d %-16s %s; server CPU %v; RSS steady %s peak %s\n",
					wl.name, round, t.name, r.Result, r.CPU, mib(r.RSSSteady), mib(r.RSSPeak))
				all = append(all, r)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(o.pause):
				}
			}
		}
	}
	elapsed := time.Since(start)

	var b strings.Builder
	fmt.Fprintf(&b, "Command: `%s`", o.command)
	if o.commit != "" {
		fmt.Fprintf(&b, " at commit `%s`", o.commit)
	}
	fmt.Fprintf(&b, ", %s. Machine: %d CPUs (%s); load average %s before, %s after; %d rounds of %v runs, %v in all.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), cpuModel(), loadBefore, loadavg(),
		o.rounds, o.duration, elapsed.Round(time.Second))
	for _, wl := range wls {
		var sums []summary
		for _, t := range ts {
			var rs []measurement
			for _, r := range all {
				if r.Workload == wl.name && r.Target == t.name {
					rs = append(rs, r)
				}
			}
			sums = append(sums, summarize(t.name, rs))
		}
		table(&b, wl.title, sums)
	}
	fmt.Print(b.String())

	if o.jsonOut != "" {
		j, err := json.MarshalIndent(all, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, j, 0o644); err != nil {
			return err
		}
	}
	if o.results != "" {
		doc, err := os.ReadFile(o.results)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		out, err := replaceSection(string(doc), b.String())
		if err != nil {
			return fmt.Errorf("%s: %w", o.results, err)
		}
		if err := os.WriteFile(o.results, []byte(out), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "updated %s\n", o.results)
	}
	return nil
}

// measure starts t fresh, runs wl against it and stops it.
func (o options) measure(ctx context.Context, wl workload, t target, round int) (measurement, error) {
	dir, err := os.MkdirTemp(o.tmp, "benchingest-")
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(dir)
	addr, err := freeAddr()
	if err != nil {
		return measurement{}, err
	}
	srv, err := startServer(ctx, t.name, t.bin, t.args(addr, dir), addr, dir, t.ready)
	if err != nil {
		return measurement{}, err
	}
	defer srv.stop(o.grace)

	cfg := wl.cfg
	cfg.Addr = addr
	cfg.Token = ingestToken
	cfg.Duration = o.duration
	cfg.Seed = uint64(round) // the same events for every target of a round
	if t.probe {
		cfg.Probe = &loadgen.Probe{APIToken: apiToken, Every: o.probeEvery, Poll: o.probePoll}
	}
	pid := srv.cmd.Process.Pid
	rss := sampleRSS(pid, 100*time.Millisecond)
	cpu0, err := procCPU(pid)
	if err != nil {
		return measurement{}, err
	}
	// The lag is read when the load stops, not when Run returns: Run
	// then still waits up to 10 s for its last freshness probe, while the
	// engine catches up.
	lagc := make(chan int64, 1)
	if t.probe {
		stop := time.AfterFunc(o.duration, func() { lagc <- engineLag(addr) })
		defer stop.Stop()
	}
	res, err := loadgen.Run(ctx, cfg)
	cpu1, cerr := procCPU(pid)
	steady, peak := rss.finish()
	if err := errors.Join(err, cerr); err != nil {
		return measurement{}, err
	}
	lag := int64(-1)
	if t.probe {
		select {
		case lag = <-lagc:
		case <-time.After(5 * time.Second): // Run ended early (an error it did not return)
		}
	}
	select {
	case <-srv.done:
		return measurement{}, fmt.Errorf("%s exited during the run (%v); its log:\n%s", t.name, srv.err, srv.logTail())
	default:
	}
	return measurement{Workload: wl.name, Target: t.name, Round: round, Result: res, CPU: cpu1 - cpu0,
		RSSSteady: steady, RSSPeak: peak, Lag: lag}, nil
}

func (o options) buildTargets() ([]target, error) {
	var ts []target
	for _, name := range o.targets {
		switch name {
		case "mailfunnel":
			ts = append(ts, target{name: name, bin: o.mailfunnel, ready: healthReady, probe: true,
				args: func(addr, dir string) []string {
					return append([]string{"serve", "--data", dir + "/data", "--addr", addr,
						"--ingest-token", ingestToken, "--api-token", apiToken}, o.mailfunnelArgs...)
				}})
		case "benthos":
			ts = append(ts, target{name: peerName(o.peer), bin: o.peer, ready: tcpReady,
				args: func(addr, dir string) []string {
					return []string{"-addr", addr, "-out", dir + "/events.jsonl"}
				}})
		case "ceiling":
			ts = append(ts, target{name: name, bin: o.ceiling, ready: tcpReady,
				args: func(addr, _ string) []string { return []string{"-addr", addr} }})
		default:
			return nil, fmt.Errorf("-targets: unknown target %q (want mailfunnel, benthos, ceiling)", name)
		}
		if _, err := os.Stat(ts[len(ts)-1].bin); err != nil {
			return nil, fmt.Errorf("%s: %w (make bench-ingest builds it)", name, err)
		}
	}
	if len(ts) == 0 || ts[0].name != "mailfunnel" {
		return nil, errors.New("-targets: mailfunnel must come first; the ratios are of mailfunnel to the others")
	}
	return ts, nil
}

func (o options) buildWorkloads() ([]workload, error) {
	var wls []workload
	for _, name := range o.workloads {
		switch name {
		case "sendpulse":
			wls = append(wls, workload{name: name,
				title: fmt.Sprintf("SendPulse, %d-event batches, %d connections", o.spBatch, o.spConns),
				cfg:   loadgen.Config{Mode: loadgen.SendPulse, BatchSize: o.spBatch, Connections: o.spConns}})
		case "emblue":
			wls = append(wls, workload{name: name,
				title: fmt.Sprintf("emBlue, single events, %d connections", o.ebConns),
				cfg:   loadgen.Config{Mode: loadgen.EmBlue, Connections: o.ebConns}})
		default:
			return nil, fmt.Errorf("-workloads: unknown workload %q (want sendpulse, emblue)", name)
		}
	}
	return wls, nil
}

// peerName is "benthos" with the Benthos version the peer binary was built
// with, read from its build info.
func peerName(bin string) string {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "benthos"
	}
	for _, d := range info.Deps {
		if d.Path == "github.com/redpanda-data/benthos/v4" {
			return "benthos " + d.Version
		}
	}
	return "benthos"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown model"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}

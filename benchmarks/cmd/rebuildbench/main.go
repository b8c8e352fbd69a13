// Command rebuildbench measures the engine at scale on the real binary:
// it writes N events over R recipients into a fresh data directory's log,
// then times `mailfunnel rebuild` on it (events/s and peak RSS of the
// process), then starts `mailfunnel serve` on the result and times how
// long it takes until /readyz answers 200 (restart to ready: the engine
// resumes from its checkpoint, it does not replay).
//
//	go build -o bin/mailfunnel ./cmd/mailfunnel
//	go run ./benchmarks/cmd/rebuildbench -events 10000000 -recipients 2000000
//
// To compare binaries on the same log without writing it again (a 10M log
// takes minutes), keep the data directory and reuse it:
//
//	go run ./benchmarks/cmd/rebuildbench -data /tmp/rb10m -keep -events 10000000 -recipients 2000000
//	go run ./benchmarks/cmd/rebuildbench -data /tmp/rb10m -keep -reuse -ready=false -bin /tmp/old/mailfunnel
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

func main() {
	var (
		bin        = flag.String("bin", "bin/mailfunnel", "the mailfunnel binary")
		n          = flag.Int("events", 10_000_000, "events to write")
		recipients = flag.Int("recipients", 2_000_000, "distinct recipients")
		campaigns  = flag.Int("campaigns", 50, "campaigns")
		data       = flag.String("data", "", "data directory (default: a temp dir, removed afterwards)")
		keep       = flag.Bool("keep", false, "keep the data directory")
		reuse      = flag.Bool("reuse", false, "use the log already in -data (written by an earlier run with the same -events) and remove its state first")
		ready      = flag.Bool("ready", true, "time the restart to ready after the rebuild")
	)
	flag.Parse()
	if err := run(*bin, *n, *recipients, *campaigns, *data, *keep, *reuse, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "rebuildbench:", err)
		os.Exit(1)
	}
}

func run(bin string, n, recipients, campaigns int, data string, keep, reuse, ready bool) error {
	if data == "" {
		d, err := os.MkdirTemp("", "rebuildbench-")
		if err != nil {
			return err
		}
		data = d
	}
	if !keep {
		defer os.RemoveAll(data)
	}
	start := time.Now()
	if reuse {
		// A rebuild reads the old state's lift journal first: start from
		// none, as after writing the log, so that runs compare.
		if err := os.RemoveAll(filepath.Join(data, "state")); err != nil {
			return err
		}
		fmt.Printf("reusing the log in %s (%d events expected)\n", data, n)
	} else {
		if err := writeLog(filepath.Join(data, "log"), n, recipients, campaigns); err != nil {
			return err
		}
		fmt.Printf("wrote %d events over %d recipients and %d campaigns in %v\n", n, recipients, campaigns, time.Since(start).Round(time.Millisecond))
	}

	cmd := exec.Command(bin, "rebuild", "--data", data)
	cmd.Stderr = os.Stderr
	start = time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	// RSS counts file pages Badger has mapped (tables, value log) as well
	// as the process's own memory; sample both apart.
	var anon, file int64
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				anon = max(anon, statusKiB(cmd.Process.Pid, "RssAnon:"))
				file = max(file, statusKiB(cmd.Process.Pid, "RssFile:"))
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	took := time.Since(start)
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
	fmt.Printf("rebuild: %v, %.0f events/s, peak RSS %.0f MiB (sampled peaks: anonymous %.0f MiB, mapped files %.0f MiB)\n",
		took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(rss)/1024, float64(anon)/1024, float64(file)/1024)

	if !ready {
		return nil
	}
	took, serveRSS, err := restartToReady(bin, data)
	if err != nil {
		return err
	}
	fmt.Printf("restart to ready: %v (serve RSS at ready %.0f MiB)\n", took.Round(time.Millisecond), float64(serveRSS)/1024)
	return nil
}

// writeLog appends a realistic stream: per recipient a send, most
// delivered, some opened and clicked, a few bounces, unsubscribes and
// complaints, at about 2,000 events per second of event time.
func writeLog(dir string, n, recipients, campaigns int) error {
	cfg := storage.DefaultConfig(dir)
	cfg.NoSync = true
	l, err := storage.Open(cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	mix := []struct {
		t event.Type
		w int
	}{{event.Sent, 30}, {event.Delivered, 28}, {event.Opened, 20}, {event.Clicked, 8}, {event.SoftBounce, 4},
		{event.HardBounce, 3}, {event.Unsubscribed, 4}, {event.Complained, 1}, {event.Undelivered, 2}}
	total := 0
	for _, m := range mix {
		total += m.w
	}
	batch := make([]event.Event, 0, 10_000)
	for i := 0; i < n; i++ {
		x, typ := rng.IntN(total), event.Sent
		for _, m := range mix {
			if x < m.w {
				typ = m.t
				break
			}
			x -= m.w
		}
		r := rng.IntN(recipients)
		rcpt := "user" + strconv.Itoa(r) + "@example" + strconv.Itoa(r%500) + ".com"
		t := base.Add(time.Duration(i) * 500 * time.Microsecond).Add(time.Duration(rng.IntN(120)) * time.Second).Truncate(time.Second)
		e := event.Event{
			Source: "sendpulse", Provider: "sendpulse", ProviderEvent: typ.String(), Type: typ, Account: "sendpulse",
			Campaign: strconv.Itoa(17_000_000 + r%campaigns), Recipient: rcpt, RecipientDomain: event.Domain(rcpt),
			MessageID: strconv.Itoa(i), EventTime: t, ReceivedTime: t.Add(time.Minute),
		}
		if typ.IsBounce() {
			e.SMTPCode, e.SMTPStatus, e.SMTPResponse = 550, "5.1.1", "MX: mx.example.com RESP: 5.1.1 User unknown"
			if typ == event.SoftBounce {
				e.SMTPCode, e.SMTPStatus, e.SMTPResponse = 452, "4.2.2", "MX: mx.example.com RESP: 4.2.2 Mailbox full"
			}
		}
		batch = append(batch, e)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := l.Append(context.Background(), batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// restartToReady starts serve on data and returns the time until /readyz
// answers 200, and the process's RSS then (KiB).
func restartToReady(bin, data string) (time.Duration, int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--data", data, "--addr", addr, "--export-interval", "0", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	deadline := start.Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				took := time.Since(start)
				return took, statusKiB(cmd.Process.Pid, "VmRSS:"), nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, 0, errors.New("serve did not become ready within 5 minutes")
}

// statusKiB reads one "Name: N kB" field of /proc/<pid>/status.
func statusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			v, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v
		}
	}
	return 0
}

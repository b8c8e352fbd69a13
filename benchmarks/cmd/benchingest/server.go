package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is one started server process.
type server struct {
	name string
	addr string
	cmd  *exec.Cmd
	dir  string // scratch dir: data, output file, log
	done chan struct{}
	err  error // the process's exit, valid after done closes
}

// startServer starts bin with args in its own process group, its output in
// dir/server.log, and waits until addr answers (ready) or 30s pass.
func startServer(ctx context.Context, name, bin string, args []string, addr, dir string, ready func(context.Context, string) error) (*server, error) {
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, addr: addr, cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := ready(rctx, addr)
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited before it was ready (%v); its log:\n%s", name, s.err, s.logTail())
		case <-rctx.Done():
			s.stop(time.Second)
			return nil, fmt.Errorf("%s not ready on %s after 30s: %v; its log:\n%s", name, addr, err, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group.
func (s *server) stop(grace time.Duration) {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// tcpReady succeeds once addr accepts a connection.
func tcpReady(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// healthReady succeeds once GET /healthz answers 200.
func healthReady(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: status %d", resp.StatusCode)
	}
	return nil
}

// engineLag reads the engine's lag (events durable in the log but not yet
// applied) from mailfunnel's /readyz; -1 when it cannot be read.
func engineLag(addr string) int64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var body struct {
		Lag *int64 `json:"lag"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Lag == nil {
		return -1
	}
	return *body.Lag
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// rssSampler samples a process's resident set size (VmRSS) while the load
// runs.
type rssSampler struct {
	pid     int
	mu      sync.Mutex
	samples []int64 // bytes
	stop    chan struct{}
	done    chan struct{}
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	r := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
			if v, err := procStatus(pid, "VmRSS"); err == nil {
				r.mu.Lock()
				r.samples = append(r.samples, v)
				r.mu.Unlock()
			}
		}
	}()
	return r
}

// finish stops sampling and returns the steady RSS, the median of the
// samples of the load's second half (after warm-up), and the peak, the
// kernel's high-water mark VmHWM.
func (r *rssSampler) finish() (steady, peak int64) {
	close(r.stop)
	<-r.done
	peak, _ = procStatus(r.pid, "VmHWM")
	s := slices.Clone(r.samples[len(r.samples)/2:])
	if len(s) > 0 {
		slices.Sort(s)
		steady = s[(len(s)-1)/2]
	}
	return steady, peak
}

// clockTick is the unit of /proc/<pid>/stat's CPU times: USER_HZ, 100 on
// every Linux the project runs on.
const clockTick = 10 * time.Millisecond

// procCPU is the CPU time (user + system) the process has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line; the command name in field 2 may hold spaces, so
// the fields are counted from its closing parenthesis.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	var total time.Duration
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		total += time.Duration(n) * clockTick
	}
	return total, nil
}

// procStatus reads a "kB" field of /proc/<pid>/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseStatusField(b, field)
}

func parseStatusField(status []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(rest), " ")
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || unit != "kB" {
			return 0, fmt.Errorf("%s: cannot read %q", field, rest)
		}
		return v << 10, nil
	}
	return 0, errors.New(field + " not found")
}

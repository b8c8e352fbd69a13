package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binary is the mailfunnel binary built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailfunnel-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mailfunnel")
	// The binary is built without -race even under 'go test -race': these
	// tests are about processes and crashes, and the in-process tests cover
	// data races.
	cmd := exec.Command("go", "build", "-o", binary, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build mailfunnel:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running mailfunnel serve process.
type server struct {
	cmd  *exec.Cmd
	base string
	logs *bytes.Buffer
}

const (
	ingestTok = "in-secret"
	apiTok    = "api-secret"
)

func startServer(t *testing.T, data string, extra ...string) *server {
	t.Helper()
	os.Remove(filepath.Join(data, "server.json"))
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--ingest-token", ingestTok,
		"--api-token", apiTok, "--export-interval", "0"}, extra...)
	cmd := exec.Command(binary, args...)
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	// A test that fails before it stops the server must not leave it
	// running (it would outlive go test and load the machine). After a
	// stop or kill the signal only finds a finished process.
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	s := &server{cmd: cmd, logs: logs}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(data, "server.json"))
		if err == nil {
			var info struct{ Addr string }
			if json.Unmarshal(b, &info) == nil && info.Addr != "" {
				s.base = "http://" + info.Addr
				if resp, err := http.Get(s.base + "/healthz"); err == nil {
					resp.Body.Close()
					return s
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	t.Fatalf("server did not start:\n%s", logs)
	return nil
}

func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "serve exits cleanly on SIGTERM:\n%s", s.logs)
	case <-time.After(30 * time.Second):
		s.kill()
		t.Fatalf("serve did not stop on SIGTERM:\n%s", s.logs)
	}
}

func (s *server) get(t *testing.T, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+apiTok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), "%s", b)
	}
	return resp.StatusCode
}

// waitReady waits until the engine has applied the whole log.
func (s *server) waitReady(t *testing.T) (lastSeq uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var r struct {
			Ready   bool   `json:"ready"`
			Lag     uint64 `json:"lag"`
			LastSeq uint64 `json:"last_seq"`
		}
		if s.get(t, "/readyz", &r) == 200 && r.Lag == 0 {
			return r.LastSeq
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("engine did not catch up:\n%s", s.logs)
	return 0
}

// genEvent is one event of the test universe, with what the funnel needs.
type genEvent struct {
	provider, account, campaign string
	typ, recipient              string
	t                           time.Time
	id                          int // SendPulse message_id: events differing only in it are distinct
}

type payload struct {
	path   string
	body   []byte
	events []genEvent
}

var spNames = map[string]string{
	"delivered": "delivered", "opened": "opened", "clicked": "clicked", "undelivered": "undelivered",
	"unsubscribed": "unsubscribed", "complained": "spam_by_user", "soft_bounce": "soft_bounces", "hard_bounce": "hard_bounces",
}
var ebActivity = map[string]int{"sent": 1, "opened": 2, "clicked": 3, "subscribed": 4, "unsubscribed": 5, "complained": 6}

// universe makes SendPulse batches and emBlue single posts with redeliveries
// inside batches, out-of-order times and mixed-case addresses.
func universe(rng *rand.Rand, batches, singles int) []payload {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	recip := func() string {
		r := fmt.Sprintf("user%d@Example.COM", rng.IntN(300))
		if rng.IntN(3) == 0 {
			r = strings.ToLower(r)
		}
		return r
	}
	var out []payload
	id := 0
	spTypes := []string{"delivered", "opened", "clicked", "undelivered", "unsubscribed", "complained", "soft_bounce", "hard_bounce"}
	for b := 0; b < batches; b++ {
		var elems []string
		var evs []genEvent
		for i := 0; i < 40; i++ {
			if i > 0 && rng.IntN(15) == 0 {
				elems = append(elems, elems[rng.IntN(len(elems))]) // redelivered inside the batch
				continue
			}
			id++
			typ := spTypes[rng.IntN(len(spTypes))]
			camp := fmt.Sprint(17000 + rng.IntN(3))
			ts := base.Add(time.Duration(rng.IntN(7200)) * time.Second)
			r := recip()
			elems = append(elems, fmt.Sprintf(`{"event":%q,"timestamp":%d,"message_id":%d,"email":%q,"task_id":%s,"smtp_server_response_code":"550","smtp_server_response_subcode":"5.1.1","smtp_server_response":"user unknown"}`,
				spNames[typ], ts.Unix(), id, r, camp))
			evs = append(evs, genEvent{"sendpulse", "sendpulse", camp, typ, r, ts, id})
		}
		body := "[" + strings.Join(elems, ",") + ",]" // SendPulse's trailing comma
		out = append(out, payload{path: "/v1/webhooks/sendpulse", body: []byte(body), events: evs})
	}
	ebTypes := []string{"sent", "opened", "clicked", "subscribed", "unsubscribed", "complained"}
	for i := 0; i < singles; i++ {
		typ := ebTypes[rng.IntN(len(ebTypes))]
		camp := fmt.Sprint(555000 + rng.IntN(2))
		ts := base.Add(time.Duration(rng.Int64N(int64(2 * time.Hour)))).Truncate(time.Microsecond)
		r := recip()
		body := fmt.Sprintf(`{"account_id":1001,"action_id":%s,"type_id":1,"activity_id":%d,"email":%q,"timestamp":%q}`,
			camp, ebActivity[typ], r, ts.Format("2006-01-02 15:04:05.000000"))
		out = append(out, payload{path: "/v1/webhooks/emblue", body: []byte(body),
			events: []genEvent{{"emblue", "1001", camp, typ, r, ts, 0}}})
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

type count struct {
	Recipients int64 `json:"recipients"`
	Events     int64 `json:"events"`
}

// expectedFunnel is the contract's funnel computed naively from the
// distinct events of the universe.
func expectedFunnel(events []genEvent, provider, account, campaign string, from, to time.Time) map[string]count {
	in := func(t time.Time) bool { return (from.IsZero() || !t.Before(from)) && (to.IsZero() || t.Before(to)) }
	stages := map[string][]string{
		"sent": {"sent"}, "delivered": {"sent", "delivered"}, "opened": {"sent", "delivered", "opened"},
		"clicked": {"sent", "delivered", "opened", "clicked"}, "soft_bounce": {"sent", "soft_bounced"},
		"hard_bounce": {"sent", "hard_bounced"}, "undelivered": {"sent", "undelivered"},
		"unsubscribed": {"sent", "unsubscribed"}, "complained": {"sent", "complained"},
	}
	evName := map[string]string{"soft_bounce": "soft_bounced", "hard_bounce": "hard_bounced"}
	out := map[string]count{}
	for _, k := range []string{"sent", "delivered", "opened", "clicked", "soft_bounced", "hard_bounced", "undelivered", "unsubscribed", "complained"} {
		out[k] = count{}
	}
	first := map[string]map[string]time.Time{}
	for _, e := range events {
		if e.provider != provider || e.account != account || e.campaign != campaign {
			continue
		}
		name := e.typ
		if n, ok := evName[name]; ok {
			name = n
		}
		if c, ok := out[name]; ok && in(e.t) {
			c.Events++
			out[name] = c
		}
		r := strings.ToLower(strings.TrimSpace(e.recipient))
		for _, st := range stages[e.typ] {
			if first[st] == nil {
				first[st] = map[string]time.Time{}
			}
			if t, ok := first[st][r]; !ok || e.t.Before(t) {
				first[st][r] = e.t
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
	return out
}

// TestKillDuringIngest is the crash harness: concurrent clients post a
// generated universe of webhooks while the server is killed with SIGKILL at
// random moments and restarted; clients redeliver whatever was not
// acknowledged, as providers do. At the end every funnel figure, with and
// without a time range, must equal the naive computation over the distinct
// events: nothing acknowledged lost, nothing counted twice.
func TestKillDuringIngest(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 3
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (set MAILFUNNEL_KILL_SEED to replay)", seed)
	if s := os.Getenv("MAILFUNNEL_KILL_SEED"); s != "" {
		_, _ = fmt.Sscan(s, &seed)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	work := universe(rng, 120, 600)
	data := t.TempDir()

	var mu sync.Mutex
	queue := append([]payload(nil), work...)
	acked := 0
	take := func() (payload, bool) {
		mu.Lock()
		defer mu.Unlock()
		if len(queue) == 0 {
			return payload{}, false
		}
		p := queue[0]
		queue = queue[1:]
		return p, true
	}
	giveBack := func(p payload) {
		mu.Lock()
		queue = append(queue, p)
		mu.Unlock()
	}
	client := &http.Client{Timeout: 5 * time.Second}
	post := func(base string, p payload) (int, map[string]int) {
		req, _ := http.NewRequest(http.MethodPost, base+p.path+"?token="+ingestTok, bytes.NewReader(p.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		var out map[string]int
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	// Kills land at other points of the engine's commit cycle when it
	// commits at other paces. Two rounds in three, a tiny recipient cache
	// sends records through both of its tiers and back to the store.
	// Small dedupe tails make the log write and merge run files all the
	// time, so kills land in those too.
	intervals := []string{"50ms", "-1ms", "5ms", "200ms"}
	caches := []string{"2000000", "7", "100"}
	tails := []string{"40", "1048576", "300", "7", "2000"}
	for round := 0; ; round++ {
		srv := startServer(t, data, "--commit-interval", intervals[round%len(intervals)],
			"--recipient-cache", caches[round%len(caches)], "--dedupe-tail-keys", tails[round%len(tails)])
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					p, ok := take()
					if !ok {
						return
					}
					code, _ := post(srv.base, p)
					if code != 200 {
						require.NotEqual(t, 400, code, "valid payload rejected: %s", p.body)
						giveBack(p)
						time.Sleep(5 * time.Millisecond)
						continue
					}
					mu.Lock()
					acked++
					mu.Unlock()
				}
			}()
		}
		if round < kills {
			time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
			srv.kill()
			cancel()
			wg.Wait()
			continue
		}
		wg.Wait()
		cancel()
		// Everything is acknowledged. Providers also redeliver what was
		// acknowledged: all of it must count as duplicates.
		for _, p := range work[:50] {
			code, out := post(srv.base, p)
			require.Equal(t, 200, code)
			require.Zero(t, out["accepted"], "redelivery of an acknowledged payload stored again")
		}
		lastSeq := srv.waitReady(t)
		distinct := map[string]bool{}
		var events []genEvent
		for _, p := range work {
			for _, e := range p.events {
				k := fmt.Sprint(e)
				if !distinct[k] {
					distinct[k] = true
					events = append(events, e)
				}
			}
		}
		require.EqualValues(t, len(events), lastSeq, "every distinct event stored exactly once")
		checkFunnels(t, srv, events)
		// A clean stop and restart answers the same, and is ready at once.
		srv.stop(t)
		srv = startServer(t, data)
		srv.waitReady(t)
		checkFunnels(t, srv, events)
		srv.stop(t)
		break
	}
	require.Equal(t, len(work), acked)
}

func checkFunnels(t *testing.T, srv *server, events []genEvent) {
	t.Helper()
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ranges := [][2]time.Time{{}, {base.Add(17 * time.Minute), base.Add(83*time.Minute + 500*time.Millisecond)}, {base.Add(time.Hour), {}}}
	camps := map[[3]string]bool{}
	for _, e := range events {
		camps[[3]string{e.provider, e.account, e.campaign}] = true
	}
	for c := range camps {
		for _, r := range ranges {
			q := fmt.Sprintf("/v1/funnel?source=%s&account=%s&campaign=%s", c[0], c[1], c[2])
			if !r[0].IsZero() {
				q += "&from=" + r[0].Format(time.RFC3339Nano)
			}
			if !r[1].IsZero() {
				q += "&to=" + r[1].Format(time.RFC3339Nano)
			}
			var f struct {
				Stages   map[string]count `json:"stages"`
				Outcomes map[string]count `json:"outcomes"`
			}
			require.Equal(t, 200, srv.get(t, q, &f), q)
			got := map[string]count{}
			for k, v := range f.Stages {
				got[k] = v
			}
			for k, v := range f.Outcomes {
				got[k] = v
			}
			require.Equal(t, expectedFunnel(events, c[0], c[1], c[2], r[0], r[1]), got, q)

			// The campaign's time series over the same range.
			q = strings.Replace(q, "/v1/funnel?", "/v1/timeseries?window=5m&", 1)
			var ts struct {
				Points []struct {
					Start  time.Time        `json:"start"`
					Counts map[string]int64 `json:"counts"`
				} `json:"points"`
			}
			require.Equal(t, 200, srv.get(t, q, &ts), q)
			gotTS := map[time.Time]map[string]int64{}
			for _, p := range ts.Points {
				gotTS[p.Start.UTC()] = p.Counts
			}
			require.Equal(t, expectedSeries(events, c, 5*time.Minute, r[0], r[1]), gotTS, q)
		}
	}
}

// expectedSeries counts a campaign's events per type in windows of w.
func expectedSeries(events []genEvent, c [3]string, w time.Duration, from, to time.Time) map[time.Time]map[string]int64 {
	out := map[time.Time]map[string]int64{}
	for _, e := range events {
		if e.provider != c[0] || e.account != c[1] || e.campaign != c[2] ||
			!from.IsZero() && e.t.Before(from) || !to.IsZero() && !e.t.Before(to) {
			continue
		}
		start := e.t.UTC().Truncate(w)
		if out[start] == nil {
			out[start] = map[string]int64{}
		}
		out[start][e.typ]++
	}
	return out
}

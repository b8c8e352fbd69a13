package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/storage"
)

func (s *server) post(t *testing.T, path string, body []byte, tok string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// postAll posts the payloads (each must be acknowledged) and returns
// events extended by the distinct events they carried.
func postAll(t *testing.T, srv *server, ps []payload, events []genEvent) []genEvent {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range events {
		seen[fmt.Sprint(e)] = true
	}
	for _, p := range ps {
		code, b := srv.post(t, p.path, p.body, ingestTok)
		require.Equal(t, 200, code, "%s", b)
		for _, e := range p.events {
			if k := fmt.Sprint(e); !seen[k] {
				seen[k] = true
				events = append(events, e)
			}
		}
	}
	return events
}

// TestExportAndRebuild drives the operator commands against a real data
// dir: export through the running server and directly, rebuild while the
// server runs (refused) and after it stopped (same answers).
func TestExportAndRebuild(t *testing.T) {
	data := t.TempDir()
	work := universe(rand.New(rand.NewPCG(3, 3)), 10, 50)
	srv := startServer(t, data, "--export-workers", "1") // one encoder: the slowest path must export everything too
	events := postAll(t, srv, work, nil)
	srv.waitReady(t)
	require.Positive(t, srv.metric(t, "mailfunnel_engine_recipient_cache_records"))

	// export while the server holds the data dir: done through the server.
	out, err := exec.Command(binary, "export", "--data", data, "--api-token", apiTok).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "exporting through it")
	var files struct {
		Files []struct {
			Path string `json:"path"`
			Kind string `json:"kind"`
			Rows int64  `json:"rows"`
		} `json:"files"`
	}
	require.Equal(t, 200, srv.get(t, "/v1/exports", &files))
	var rows int64
	for _, f := range files.Files {
		if f.Kind == "events" {
			rows += f.Rows
			require.FileExists(t, filepath.Join(data, "exports", f.Path))
		}
	}
	require.EqualValues(t, len(events), rows, "every event exported once")

	// A negative --export-workers is refused by name.
	out, err = exec.Command(binary, "serve", "--data", t.TempDir(), "--export-workers", "-1").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--export-workers must not be negative")
	out, err = exec.Command(binary, "serve", "--data", t.TempDir(), "--dedupe-tail-keys", "0").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--dedupe-tail-keys must be positive")

	// rebuild refuses while the server runs.
	out, err = exec.Command(binary, "rebuild", "--data", data).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "in use")
	srv.stop(t)

	// Nothing new to export; a rebuild recomputes the same funnels.
	out, err = exec.Command(binary, "export", "--data", data).Output()
	require.NoError(t, err)
	var run struct {
		Rows int64 `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(out, &run))
	require.Zero(t, run.Rows)
	out, err = exec.Command(binary, "rebuild", "--data", data).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "rebuilt")
	srv = startServer(t, data)
	srv.waitReady(t)
	checkFunnels(t, srv, events)
	srv.stop(t)

	// A tiny recipient cache (a pass per few records, records spilled from
	// both tiers) rebuilds the same funnels; a negative one is refused.
	// With --debug-addr, which serves the profile of a long rebuild.
	out, err = exec.Command(binary, "rebuild", "--data", data, "--recipient-cache", "3", "--debug-addr", "127.0.0.1:0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "profiling endpoints listening")
	srv = startServer(t, data)
	srv.waitReady(t)
	checkFunnels(t, srv, events)
	srv.stop(t)
	out, err = exec.Command(binary, "rebuild", "--data", data, "--recipient-cache", "-1").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--recipient-cache must not be negative")
	out, err = exec.Command(binary, "rebuild", "--data", data, "--debug-addr", "256.0.0.1:1").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--debug-addr: listen on 256.0.0.1:1")

	// A state store of a newer format (as a downgrade leaves it): serve
	// refuses it, rebuild re-derives it from the log.
	db, err := storage.OpenBadger(filepath.Join(data, "state"), 8, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte{'V'}, []byte{99} /* uvarint 99 */)
	}))
	require.NoError(t, db.Close())
	out, err = exec.Command(binary, "serve", "--data", data, "--addr", "127.0.0.1:0").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "format version 99")
	out, err = exec.Command(binary, "rebuild", "--data", data).CombinedOutput()
	require.NoError(t, err, "%s", out)
	srv = startServer(t, data)
	srv.waitReady(t)
	checkFunnels(t, srv, events)
	srv.stop(t)
}

// TestRetention: with --retention the server trims log entries once the
// engine has applied them; the funnels, computed before, stay exact, and
// rebuild refuses to recompute from a trimmed log.
func TestRetention(t *testing.T) {
	data := t.TempDir()
	work := universe(rand.New(rand.NewPCG(4, 4)), 5, 20)
	srv := startServer(t, data, "--retention", "1ms", "--retention-interval", "50ms")
	events := postAll(t, srv, work, nil)
	last := srv.waitReady(t)
	require.Eventually(t, func() bool {
		var r struct {
			FirstSeq uint64 `json:"first_seq"`
		}
		srv.get(t, "/readyz", &r)
		return r.FirstSeq == last+1
	}, 10*time.Second, 20*time.Millisecond, "every applied entry trimmed")
	checkFunnels(t, srv, events)
	code, b := srv.post(t, "/v1/replay", nil, apiTok)
	require.Equal(t, 409, code, "%s", b)
	require.Contains(t, string(b), "retention")
	srv.stop(t)

	out, err := exec.Command(binary, "rebuild", "--data", data).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "retention")
	srv = startServer(t, data)
	srv.waitReady(t)
	checkFunnels(t, srv, events)
	srv.stop(t)
}

// TestReplay: POST /v1/replay re-derives the aggregates while webhooks keep
// arriving; GET /v1/replay reports progress; the funnels stay exact.
func TestReplay(t *testing.T) {
	data := t.TempDir()
	work := universe(rand.New(rand.NewPCG(5, 5)), 20, 100)
	srv := startServer(t, data)
	half := len(work) / 2
	events := postAll(t, srv, work[:half], nil)
	srv.waitReady(t)
	code, b := srv.post(t, "/v1/replay", nil, apiTok)
	require.Equal(t, 202, code, "%s", b)
	events = postAll(t, srv, work[half:], events)
	var st struct {
		State   string `json:"state"`
		Applied uint64 `json:"applied"`
		Error   string `json:"error"`
	}
	require.Eventually(t, func() bool {
		require.Equal(t, 200, srv.get(t, "/v1/replay", &st))
		return st.State != "running"
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, "done", st.State, st.Error)
	require.Positive(t, st.Applied)
	srv.waitReady(t)
	checkFunnels(t, srv, events)
	srv.stop(t)
}

// TestCommitInterval: --commit-interval sets how often the engine commits
// while webhooks trickle in: at most once a second with 1s, once per
// webhook with no wait.
func TestCommitInterval(t *testing.T) {
	work := universe(rand.New(rand.NewPCG(9, 9)), 0, 20) // emBlue singles
	for _, tc := range []struct {
		interval string
		ok       func(commits int, took time.Duration) bool
	}{
		// One commit per second the posting took, and one more at each
		// end.
		{"1s", func(n int, took time.Duration) bool { return n <= int(took/time.Second)+2 }},
		{"-1ms", func(n int, _ time.Duration) bool { return n >= 10 }},
	} {
		srv := startServer(t, t.TempDir(), "--commit-interval", tc.interval)
		srv.waitReady(t)
		before, start := srv.commits(t), time.Now()
		for _, p := range work {
			code, b := srv.post(t, p.path, p.body, ingestTok)
			require.Equal(t, 200, code, "%s", b)
			time.Sleep(10 * time.Millisecond)
		}
		n, took := srv.commits(t)-before, time.Since(start)
		t.Logf("--commit-interval %s: %d commits for %d webhooks in %v", tc.interval, n, len(work), took)
		require.True(t, tc.ok(n, took), "--commit-interval %s: %d commits for %d webhooks posted 10 ms apart in %v", tc.interval, n, len(work), took)
		srv.waitReady(t)
		srv.stop(t)
	}
}

// commits reads mailfunnel_engine_commits_total.
func (s *server) commits(t *testing.T) int {
	return int(s.metric(t, "mailfunnel_engine_commits_total"))
}

// metric reads an unlabelled metric from /metrics.
func (s *server) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", name, b)
	return 0
}

// TestDedupeFilters: the dedupe filters answer for new events from the
// first webhook on an empty data dir; after a restart they are ready only
// once the stored hashes are read back, and redeliveries of events stored
// before the restart count once all the same; --dedupe-filter-mb -1 turns
// them off. The funnels stay exact throughout.
func TestDedupeFilters(t *testing.T) {
	data := t.TempDir()
	work := universe(rand.New(rand.NewPCG(5, 5)), 6, 30)
	srv := startServer(t, data)
	srv.waitReady(t)
	events := postAll(t, srv, work, nil)
	require.EqualValues(t, 1, srv.metric(t, "mailfunnel_dedupe_filter_ready"))
	require.Positive(t, srv.metric(t, "mailfunnel_dedupe_lookups_skipped_total"))
	require.Positive(t, srv.metric(t, "mailfunnel_dedupe_filter_bytes"))
	srv.stop(t)

	srv = startServer(t, data)
	srv.waitReady(t)
	// A clean stop wrote the dedupe index's in-memory tail as a run.
	require.EqualValues(t, 1, srv.metric(t, "mailfunnel_dedupe_runs"))
	require.Positive(t, srv.metric(t, "mailfunnel_dedupe_run_hashes"))
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; srv.metric(t, "mailfunnel_dedupe_filter_ready") != 1; i++ {
		require.True(t, time.Now().Before(deadline), "dedupe filters not ready after a restart")
		// The filters take the scan's result when a webhook is stored.
		code, b := srv.post(t, work[i%len(work)].path, work[i%len(work)].body, ingestTok)
		require.Equal(t, 200, code, "%s", b)
	}
	events = postAll(t, srv, work, events) // every one a redelivery
	srv.waitReady(t)
	checkFunnels(t, srv, events)
	srv.stop(t)

	srv = startServer(t, data, "--dedupe-filter-mb", "-1")
	srv.waitReady(t)
	events = postAll(t, srv, work, events)
	require.Zero(t, srv.metric(t, "mailfunnel_dedupe_filter_ready"))
	require.Zero(t, srv.metric(t, "mailfunnel_dedupe_lookups_skipped_total"))
	require.Positive(t, srv.metric(t, "mailfunnel_dedupe_lookups_total"))
	srv.waitReady(t)
	checkFunnels(t, srv, events)
	srv.stop(t)

	// A corrupt run (a bit flipped in its first block) is found by its
	// checksum and written again from the log: webhooks that need it are
	// answered 5xx meanwhile, as a sender retries, and no redelivery is
	// counted twice.
	runs, err := filepath.Glob(filepath.Join(data, "log", "dedupe", "*.run"))
	require.NoError(t, err)
	require.NotEmpty(t, runs)
	b, err := os.ReadFile(runs[0])
	require.NoError(t, err)
	b[48+7] ^= 0x40 // past the 48-byte header
	require.NoError(t, os.WriteFile(runs[0], b, 0o644))
	srv = startServer(t, data)
	srv.waitReady(t)
	retried := 0
	for _, p := range work {
		for {
			code, b := srv.post(t, p.path, p.body, ingestTok)
			if code == 200 {
				break
			}
			require.GreaterOrEqual(t, code, 500, "%s", b)
			require.Less(t, retried, 1000, "%s", b)
			retried++
			time.Sleep(10 * time.Millisecond)
		}
	}
	require.EqualValues(t, 1, srv.metric(t, "mailfunnel_dedupe_run_repairs_total"))
	srv.waitReady(t)
	checkFunnels(t, srv, events)
	t.Logf("webhooks answered 5xx before the repair: %d", retried)
	srv.stop(t)
}

// TestDebugAddr: --debug-addr serves Go's profiling endpoints on a listener
// of their own, named in server.json, and the server still stops cleanly.
func TestDebugAddr(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data, "--debug-addr", "127.0.0.1:0")
	b, err := os.ReadFile(filepath.Join(data, "server.json"))
	require.NoError(t, err)
	var info struct {
		DebugAddr string `json:"debug_addr"`
	}
	require.NoError(t, json.Unmarshal(b, &info))
	require.NotEmpty(t, info.DebugAddr)
	for path, wants := range map[string][]string{
		"/debug/pprof/cmdline":      {"serve"},
		"/debug/pprof/heap?debug=1": {"heap profile"},
		// Goroutines carry the component that started them, Badger's and
		// the log's background goroutines included.
		"/debug/pprof/goroutine?debug=1": {"goroutine profile",
			`labels: {"component":"engine"}`, `labels: {"component":"storage"}`, `labels: {"component":"http"}`},
	} {
		resp, err := http.Get("http://" + info.DebugAddr + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, path)
		for _, want := range wants {
			require.Contains(t, string(body), want, path)
		}
	}
	// Not on the API's listener.
	resp, err := http.Get(srv.base + "/debug/pprof/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode)
	srv.stop(t)
}

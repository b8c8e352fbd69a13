package loadgen

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one value", []time.Duration{7}, 0.99, 7},
		{"p50 of 100", hundred, 0.5, 50},
		{"p99 of 100", hundred, 0.99, 99},
		{"p99.9 of 100", hundred, 0.999, 100},
		{"max", hundred, 1, 100},
		{"p50 of 3", []time.Duration{1, 2, 3}, 0.5, 2},
		{"p50 of 4", []time.Duration{1, 2, 3, 4}, 0.5, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Quantile(tc.sorted, tc.q); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRunProbe runs the load and the freshness probe against a fake server
// whose funnel shows a probe's campaign 3 queries after its webhook.
func TestRunProbe(t *testing.T) {
	for _, mode := range []Mode{SendPulse, EmBlue} {
		t.Run(string(mode), func(t *testing.T) {
			var mu sync.Mutex
			polls := map[string]int{} // campaign -> funnel queries seen
			mux := http.NewServeMux()
			mux.HandleFunc("POST /v1/webhooks/{provider}", func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer in" {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				_, _ = w.Write([]byte(`{"accepted":1,"duplicates":0}`))
			})
			mux.HandleFunc("GET /v1/funnel", func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer api" || r.URL.Query().Get("source") != string(mode) {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				c := r.URL.Query().Get("campaign")
				if !strings.HasPrefix(c, "9") {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				mu.Lock()
				polls[c]++
				n := polls[c]
				mu.Unlock()
				if n < 3 {
					w.WriteHeader(http.StatusNotFound)
					return
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"stages": map[string]any{"sent": map[string]int{"recipients": 1, "events": 1}}})
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: mux}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()

			res, err := Run(context.Background(), Config{
				Addr: ln.Addr().String(), Token: "in", Mode: mode, BatchSize: 10, Connections: 2,
				Duration: 300 * time.Millisecond, Seed: 1,
				Probe: &Probe{APIToken: "api", Every: 20 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors > 0 || res.Non2xx > 0 || res.Requests == 0 {
				t.Fatalf("load: %v", res)
			}
			f := res.Freshness
			if f == nil || f.Samples < 3 || f.Lost > 0 || f.Failed > 0 || f.P50 < 2*time.Millisecond || f.P99 < f.P50 || f.Max < f.P99 {
				t.Fatalf("freshness: %+v", f)
			}
		})
	}
}

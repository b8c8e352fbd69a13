package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/gofiber/fiber/v2"
	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/query"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// newDeliverabilityApp serves: d.com with a delivery, a click and a hard
// bounce; e.org with a complaint and an unsubscribe in another campaign;
// and extra suppressed addresses (complaints) of many domains.
func newDeliverabilityApp(t testing.TB, extra int) *fiber.App {
	t.Helper()
	l := storagetest.New(t)
	evs := []event.Event{
		ev(event.Sent, "a1", "c1", "x@d.com", 0),
		ev(event.Delivered, "a1", "c1", "x@d.com", time.Minute),
		ev(event.Clicked, "a1", "c1", "X@D.com ", 90*time.Minute),
		ev(event.Sent, "a1", "c1", "y@d.com", 0),
		bounceEv(ev(event.HardBounce, "a1", "c1", "y@d.com", 2*time.Minute)),
		ev(event.Delivered, "a1", "c2", "p@e.org", 0),
		ev(event.Complained, "a1", "c2", "p@e.org", 3*time.Minute),
		ev(event.Delivered, "a1", "c2", "q@e.org", 0),
		ev(event.Unsubscribed, "a1", "c2", "Q@e.org", 4*time.Minute),
	}
	for i := 0; i < extra; i++ {
		r := fmt.Sprintf("z%05d@x%d.net", i, i%50)
		evs = append(evs, ev(event.Complained, "a1", "c3", r, time.Duration(i)*time.Second))
	}
	for len(evs) > 0 {
		n := min(len(evs), 10_000)
		_, err := l.AppendCtx(evs[:n]...)
		require.NoError(t, err)
		evs = evs[n:]
	}
	eng, err := engine.Open(engine.DefaultConfig(t.TempDir()), l)
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close() })
	require.NoError(t, eng.CatchUp(context.Background(), nil))
	api, err := query.New(query.Config{Token: tok}, eng, l)
	require.NoError(t, err)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	api.Mount(app)
	return app
}

func do(t testing.TB, app *fiber.App, method, path string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := app.Test(req, 10_000)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func TestDomains(t *testing.T) {
	app := newDeliverabilityApp(t, 0)
	code, b, _ := get(t, app, "/v1/domains?source=sp&campaign=c1", nil)
	require.Equal(t, 200, code, "%s", b)
	require.JSONEq(t, `{"domains":[{"domain":"d.com","sent":2,"delivered":1,"opened":1,"clicked":1,
		"bounced":{"hard":1,"soft":0,"undetermined":0},"soft_bounced":0,"hard_bounced":1,"undelivered":0,
		"complained":0,"unsubscribed":0,
		"rates":{"delivery":0.5,"open":1,"click":1,"bounce":0.5,"complaint":0,"unsubscribe":0}}]}`, string(b))

	var out struct{ Domains []engine.DomainStats }
	code, b, _ = get(t, app, "/v1/domains", nil)
	require.Equal(t, 200, code, "%s", b)
	require.NoError(t, json.Unmarshal(b, &out))
	require.Len(t, out.Domains, 2)
	require.Equal(t, "d.com", out.Domains[0].Domain) // 2 sent before 2 sent: then by name
	require.Equal(t, "e.org", out.Domains[1].Domain)
	require.EqualValues(t, 1, out.Domains[1].Complained)
	require.InDelta(t, 0.5, out.Domains[1].Rates["unsubscribe"], 1e-12)

	// First reach in range: the click (and so the open) lies at 90m.
	code, b, _ = get(t, app, "/v1/domains?source=sp&campaign=c1&account=a1&from=2026-11-23T10:00:00Z&to=2026-11-23T11:00:00Z", nil)
	require.Equal(t, 200, code, "%s", b)
	require.NoError(t, json.Unmarshal(b, &out))
	require.Len(t, out.Domains, 1)
	require.EqualValues(t, 0, out.Domains[0].Opened)
	require.EqualValues(t, 1, out.Domains[0].Delivered)

	code, b, _ = get(t, app, "/v1/domains?from=2030-01-01T00:00:00Z", nil)
	require.Equal(t, 200, code)
	require.JSONEq(t, `{"domains":[]}`, string(b))
}

func TestSuppressionsAPI(t *testing.T) {
	app := newDeliverabilityApp(t, 25)

	code, b, _ := get(t, app, "/v1/suppressions/%20Y@D.COM", nil)
	require.Equal(t, 200, code, "%s", b)
	require.JSONEq(t, `{"recipient":"y@d.com","reason":"hard_bounce","suppressed_at":"2026-11-23T10:02:00Z",
		"event":{"seq":5,"source":"sp","account":"a1","campaign":"c1","provider_event":"hard_bounce","type":"hard_bounce",
		"event_time":"2026-11-23T10:02:00Z","bounce_class":"hard","bounce_reason":"user_unknown"}}`, string(b))

	code, b, _ = get(t, app, "/v1/suppressions/x@d.com", nil)
	require.Equal(t, 404, code)
	var e map[string]any
	require.NoError(t, json.Unmarshal(b, &e))
	require.Contains(t, e["error"], "x@d.com")

	// Paging: every address once, in order, with a cursor.
	var all []engine.Suppression
	after := ""
	pages := 0
	for {
		code, b, _ := get(t, app, "/v1/suppressions?limit=7&after="+after, nil)
		require.Equal(t, 200, code, "%s", b)
		var page struct {
			Suppressions []engine.Suppression
			Next         string
		}
		require.NoError(t, json.Unmarshal(b, &page))
		all = append(all, page.Suppressions...)
		pages++
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	require.Len(t, all, 28)
	require.Equal(t, 4, pages)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].Recipient, all[i].Recipient)
	}
	for reason, n := range map[string]int{"hard_bounce": 1, "complaint": 26, "unsubscribe": 1, "soft_bounces": 0} {
		code, b, _ := get(t, app, "/v1/suppressions?limit=1000&reason="+reason, nil)
		require.Equal(t, 200, code)
		var page struct{ Suppressions []engine.Suppression }
		require.NoError(t, json.Unmarshal(b, &page))
		require.Len(t, page.Suppressions, n, reason)
	}

	// Lift: gone, then 404 for the second lift.
	code, b = do(t, app, http.MethodDelete, "/v1/suppressions/Q@E.ORG")
	require.Equal(t, 200, code, "%s", b)
	var lifted struct {
		Lifted engine.Suppression
		Seq    uint64
	}
	require.NoError(t, json.Unmarshal(b, &lifted))
	require.Equal(t, "unsubscribe", lifted.Lifted.Reason)
	require.EqualValues(t, 9+25, lifted.Seq)
	code, _, _ = get(t, app, "/v1/suppressions/q@e.org", nil)
	require.Equal(t, 404, code)
	code, b = do(t, app, http.MethodDelete, "/v1/suppressions/q@e.org")
	require.Equal(t, 404, code, "%s", b)

	for _, tc := range []struct{ path, contains string }{
		{"/v1/suppressions?reason=bored", "reason"},
		{"/v1/suppressions?limit=0", "limit"},
		{"/v1/suppressions?after=***", "after"},
		{"/v1/domains?source=sp", "campaign"},
		{"/v1/domains?from=monday", "from"},
		{"/v1/domains?source=sp&campaign=nope", "nope"},
	} {
		code, b, _ := get(t, app, tc.path, nil)
		require.Contains(t, []int{400, 404}, code, tc.path)
		require.NoError(t, json.Unmarshal(b, &e))
		require.Contains(t, e["error"], tc.contains, tc.path)
	}
	req := httptest.NewRequest(http.MethodDelete, "/v1/suppressions/y@d.com", nil)
	resp, err := app.Test(req)
	require.NoError(t, err)
	require.Equal(t, 401, resp.StatusCode)
}

func TestDeliverabilityArrow(t *testing.T) {
	app := newDeliverabilityApp(t, 3)
	for path, cols := range map[string]map[string]bool{
		"/v1/domains":      {"domain": true, "sent": true, "bounced_hard": true},
		"/v1/suppressions": {"recipient": true, "reason": true, "suppressed_at": true, "seq": true, "bounce_reason": true},
	} {
		code, b, hdr := get(t, app, path, map[string]string{"Accept": query.ArrowStream})
		require.Equal(t, 200, code, "%s", b)
		require.Equal(t, query.ArrowStream, hdr.Get("Content-Type"))
		r, err := ipc.NewReader(bytes.NewReader(b))
		require.NoError(t, err, path)
		seen := map[string]bool{}
		for _, f := range r.Schema().Fields() {
			seen[f.Name] = true
		}
		for c := range cols {
			require.True(t, seen[c], "%s: column %s", path, c)
		}
		n := int64(0)
		for r.Next() {
			rec := r.RecordBatch()
			n += rec.NumRows()
			if path == "/v1/suppressions" {
				require.Equal(t, "p@e.org", rec.Column(0).(*array.String).Value(0))
			}
		}
		require.NoError(t, r.Err())
		r.Release()
		require.Equal(t, map[string]int64{"/v1/domains": 5, "/v1/suppressions": 6}[path], n, path)
	}
}

// BenchmarkSuppressionLookup measures GET /v1/suppressions/{recipient}
// through the Fiber app (app.Test: routing, auth, one Badger get, JSON),
// over 100,000 suppressed addresses, half of the lookups hits.
//
//	go test ./query -run '^$' -bench BenchmarkSuppressionLookup -benchtime 20000x -count 3
func BenchmarkSuppressionLookup(b *testing.B) {
	const n = 100_000
	app := newDeliverabilityApp(b, n)
	paths := make([]string, 1024)
	for i := range paths {
		paths[i] = fmt.Sprintf("/v1/suppressions/Z%05d@X%d.NET", (i*7919)%n, ((i*7919)%n)%50)
		if i%2 == 1 {
			paths[i] = fmt.Sprintf("/v1/suppressions/nobody%d@x.net", i)
		}
	}
	b.ReportAllocs()
	start := time.Now()
	i := 0
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, paths[i%len(paths)], nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := app.Test(req, -1)
		if err != nil {
			b.Fatal(err)
		}
		if want := 200 + 204*(i%2); resp.StatusCode != want {
			b.Fatalf("%s: %d, want %d", paths[i%len(paths)], resp.StatusCode, want)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		i++
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "lookups/s")
}

package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/query"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

const tok = "api-secret"

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func ev(typ event.Type, acct, camp, rcpt string, at time.Duration) event.Event {
	return event.Event{Source: "sp", Provider: "sendpulse", ProviderEvent: typ.String(), Type: typ, Account: acct,
		Campaign: camp, Recipient: rcpt, RecipientDomain: event.Domain(rcpt), EventTime: t0.Add(at), ReceivedTime: t0}
}

func bounceEv(e event.Event) event.Event {
	e.SMTPCode, e.SMTPStatus, e.SMTPResponse = 550, "5.1.1", "y@d.com MX: mx.d.com RESP: 5.1.1 User unknown"
	return e
}

func newApp(t *testing.T) *fiber.App {
	t.Helper()
	return newAppEvents(t,
		ev(event.Sent, "a1", "c1", "x@d.com", 0),
		ev(event.Delivered, "a1", "c1", "x@d.com", time.Minute),
		ev(event.Clicked, "a1", "c1", "X@D.com ", 90*time.Minute),
		ev(event.Sent, "a1", "c1", "y@d.com", 0),
		bounceEv(ev(event.HardBounce, "a1", "c1", "y@d.com", 2*time.Minute)),
		ev(event.Sent, "a1", "shared", "x@d.com", 0),
		ev(event.Sent, "a2", "shared", "x@d.com", 0),
	)
}

func newAppEvents(t *testing.T, evs ...event.Event) *fiber.App {
	t.Helper()
	l := storagetest.New(t)
	_, err := l.AppendCtx(evs...)
	require.NoError(t, err)
	eng, err := engine.Open(engine.DefaultConfig(t.TempDir()), l)
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close() })
	require.NoError(t, eng.CatchUp(context.Background(), nil))
	api, err := query.New(query.Config{Token: tok}, eng, l)
	require.NoError(t, err)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	query.MountProbes(app, func() (bool, string, map[string]any) { return true, "", map[string]any{"lag": 0} }, prometheus.NewRegistry())
	api.Mount(app)
	return app
}

func get(t *testing.T, app *fiber.App, path string, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := app.Test(req, 10_000)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b, resp.Header
}

func TestFunnelJSON(t *testing.T) {
	app := newApp(t)
	code, b, _ := get(t, app, "/v1/funnel?source=sp&campaign=c1", nil)
	require.Equal(t, 200, code, "%s", b)
	var f struct {
		Source, Account, Campaign string
		Stages                    map[string]engine.Count
		Outcomes                  map[string]engine.Count
		Rates                     map[string]float64
	}
	require.NoError(t, json.Unmarshal(b, &f))
	require.Equal(t, "a1", f.Account)
	require.Equal(t, map[string]engine.Count{
		"sent": {Recipients: 2, Events: 2}, "delivered": {Recipients: 1, Events: 1},
		"opened": {Recipients: 1, Events: 0}, "clicked": {Recipients: 1, Events: 1},
	}, f.Stages)
	require.Equal(t, engine.Count{Recipients: 1, Events: 1}, f.Outcomes["hard_bounced"])
	require.InDelta(t, 0.5, f.Rates["delivery"], 1e-12)
	require.InDelta(t, 0.5, f.Rates["bounce"], 1e-12)
	require.InDelta(t, 1.0, f.Rates["click_to_open"], 1e-12)
	require.Len(t, f.Rates, 7)

	// The click's first reach of "opened" lies at 90m: outside [0, 1h).
	code, b, _ = get(t, app, "/v1/funnel?source=sp&campaign=c1&from=2026-11-23T10:00:00Z&to=2026-11-23T11:00:00Z", nil)
	require.Equal(t, 200, code)
	require.NoError(t, json.Unmarshal(b, &f))
	require.Equal(t, engine.Count{Recipients: 0, Events: 0}, f.Stages["opened"])
	require.Equal(t, engine.Count{Recipients: 1, Events: 1}, f.Stages["delivered"])
}

func TestErrors(t *testing.T) {
	app := newApp(t)
	cases := []struct {
		name, path string
		want       int
		contains   string
	}{
		{"no source", "/v1/funnel?campaign=c1", 400, "source"},
		{"no campaign", "/v1/funnel?source=sp", 400, "campaign"},
		{"bad from", "/v1/funnel?source=sp&campaign=c1&from=yesterday", 400, "from"},
		{"to before from", "/v1/funnel?source=sp&campaign=c1&from=2026-11-23T11:00:00Z&to=2026-11-23T10:00:00Z", 400, "before"},
		{"unknown campaign", "/v1/funnel?source=sp&campaign=zzz", 404, "zzz"},
		{"ambiguous account", "/v1/funnel?source=sp&campaign=shared", 400, "a1, a2"},
		{"bad window", "/v1/timeseries?source=sp&campaign=c1&window=2m", 400, "window"},
		{"bad distinct", "/v1/timeseries?source=sp&campaign=c1&distinct=messages", 400, "distinct"},
		{"bad limit", "/v1/deadletters?limit=0", 400, "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, b, _ := get(t, app, tc.path, nil)
			require.Equal(t, tc.want, code, "%s", b)
			var e map[string]any
			require.NoError(t, json.Unmarshal(b, &e))
			require.Contains(t, e["error"], tc.contains)
		})
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/campaigns", nil)
	resp, err := app.Test(req)
	require.NoError(t, err)
	require.Equal(t, 401, resp.StatusCode)
}

func TestTimeseriesAndCampaigns(t *testing.T) {
	app := newApp(t)
	code, b, _ := get(t, app, "/v1/timeseries?source=sp&campaign=c1&window=1h", nil)
	require.Equal(t, 200, code, "%s", b)
	var ts struct {
		Window string
		Points []engine.Point
	}
	require.NoError(t, json.Unmarshal(b, &ts))
	require.Equal(t, "1h", ts.Window)
	require.Equal(t, []engine.Point{
		{Start: t0, Counts: map[string]int64{"sent": 2, "delivered": 1, "hard_bounce": 1}},
		{Start: t0.Add(time.Hour), Counts: map[string]int64{"clicked": 1}},
	}, ts.Points)

	code, b, _ = get(t, app, "/v1/timeseries?source=sp&campaign=c1&window=1h&distinct=recipients", nil)
	require.Equal(t, 200, code, "%s", b)
	require.NoError(t, json.Unmarshal(b, &ts))
	require.Equal(t, map[string]int64{"sent": 2, "delivered": 1, "hard_bounce": 1}, ts.Points[0].Recipients)
	require.Equal(t, map[string]int64{"clicked": 1}, ts.Points[1].Recipients)

	code, b, _ = get(t, app, "/v1/campaigns", nil)
	require.Equal(t, 200, code)
	var cs struct{ Campaigns []engine.CampaignInfo }
	require.NoError(t, json.Unmarshal(b, &cs))
	require.Len(t, cs.Campaigns, 3)
	require.Equal(t, int64(5), cs.Campaigns[0].Events)
}

func TestBounces(t *testing.T) {
	app := newApp(t)
	for _, tc := range []struct{ path, key string }{
		{"/v1/bounces?by=reason", "user_unknown"},
		{"/v1/bounces?source=sp&campaign=c1&by=class", "hard"},
		{"/v1/bounces?source=sp&campaign=c1&by=status", "5.1.1"},
		{"/v1/bounces?by=domain", "d.com"},
		{"/v1/bounces?by=mx", "mx.d.com"},
	} {
		code, b, _ := get(t, app, tc.path, nil)
		require.Equal(t, 200, code, "%s", b)
		var out struct {
			By     string
			Groups []engine.Group
		}
		require.NoError(t, json.Unmarshal(b, &out))
		require.Equal(t, []engine.Group{{Key: tc.key, Events: 1, Recipients: 1}}, out.Groups, tc.path)
	}
	code, b, _ := get(t, app, "/v1/bounces?by=reason&from=2026-11-23T10:05:00Z", nil)
	require.Equal(t, 200, code)
	require.JSONEq(t, `{"by":"reason","groups":[]}`, string(b))
	code, _, _ = get(t, app, "/v1/bounces?by=color", nil)
	require.Equal(t, 400, code)
	code, _, _ = get(t, app, "/v1/bounces?source=sp", nil)
	require.Equal(t, 400, code)
}

func TestArrow(t *testing.T) {
	app := newApp(t)
	code, b, hdr := get(t, app, "/v1/funnel?source=sp&campaign=c1", map[string]string{"Accept": query.ArrowStream})
	require.Equal(t, 200, code, "%s", b)
	require.Equal(t, query.ArrowStream, hdr.Get("Content-Type"))
	r, err := ipc.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	defer r.Release()
	rows := map[string][2]int64{}
	for r.Next() {
		rec := r.RecordBatch()
		names := rec.Column(4).(*array.String)
		rc := rec.Column(5).(*array.Int64)
		ec := rec.Column(6).(*array.Int64)
		for i := 0; i < int(rec.NumRows()); i++ {
			rows[names.Value(i)] = [2]int64{rc.Value(i), ec.Value(i)}
		}
	}
	require.NoError(t, r.Err())
	require.Len(t, rows, 9)
	require.Equal(t, [2]int64{2, 2}, rows["sent"])
	require.Equal(t, [2]int64{1, 1}, rows["hard_bounced"])

	for _, path := range []string{"/v1/campaigns", "/v1/timeseries?source=sp&campaign=c1&window=1d", "/v1/bounces?by=class"} {
		code, b, _ = get(t, app, path, map[string]string{"Accept": query.ArrowStream})
		require.Equal(t, 200, code)
		r, err := ipc.NewReader(bytes.NewReader(b))
		require.NoError(t, err, path)
		n := int64(0)
		for r.Next() {
			n += r.RecordBatch().NumRows()
		}
		r.Release()
		require.Positive(t, n, path)
	}
}

func TestProbes(t *testing.T) {
	app := newApp(t)
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		req := httptest.NewRequest(http.MethodGet, p, nil)
		resp, err := app.Test(req)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode, p)
	}
}

// TestLateEvents: an event behind its source's watermark is counted (never
// dropped), marked in its window's revision and late count, and shown by
// /v1/watermarks and the funnel.
func TestLateEvents(t *testing.T) {
	at := func(e event.Event, recv time.Duration) event.Event {
		e.ReceivedTime = t0.Add(recv)
		return e
	}
	app := newAppEvents(t,
		at(ev(event.Sent, "a1", "c1", "x@d.com", 0), 0),
		at(ev(event.Sent, "a1", "c1", "y@d.com", 3*time.Hour), 3*time.Hour),
		// 30 minutes behind the newest time: within the default hour.
		at(ev(event.Delivered, "a1", "c1", "y@d.com", 150*time.Minute), 3*time.Hour),
		// Two hours behind: late.
		at(ev(event.Delivered, "a1", "c1", "x@d.com", time.Minute), 3*time.Hour),
	)
	code, b, _ := get(t, app, "/v1/watermarks", nil)
	require.Equal(t, 200, code, "%s", b)
	var wm struct {
		AllowedLateness string `json:"allowed_lateness"`
		Sources         []engine.Watermark
	}
	require.NoError(t, json.Unmarshal(b, &wm))
	require.Equal(t, "1h0m0s", wm.AllowedLateness)
	require.Equal(t, []engine.Watermark{{Source: "sp", MaxEventTime: t0.Add(3 * time.Hour), Watermark: t0.Add(2 * time.Hour), LateEvents: 1}}, wm.Sources)

	code, b, _ = get(t, app, "/v1/timeseries?source=sp&campaign=c1&window=1h", nil)
	require.Equal(t, 200, code, "%s", b)
	var ts struct{ Points []engine.Point }
	require.NoError(t, json.Unmarshal(b, &ts))
	require.Equal(t, []engine.Point{
		{Start: t0, Counts: map[string]int64{"sent": 1, "delivered": 1}, Final: true, LateEvents: 1, Revision: 1},
		{Start: t0.Add(2 * time.Hour), Counts: map[string]int64{"delivered": 1}},
		{Start: t0.Add(3 * time.Hour), Counts: map[string]int64{"sent": 1}},
	}, ts.Points)

	code, b, _ = get(t, app, "/v1/funnel?source=sp&campaign=c1", nil)
	require.Equal(t, 200, code, "%s", b)
	var f engine.Funnel
	require.NoError(t, json.Unmarshal(b, &f))
	require.EqualValues(t, 1, f.LateEvents)
	require.Equal(t, engine.Count{Recipients: 2, Events: 2}, f.Stages["delivered"])
}

package sendpulse_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/ingest"
	"github.com/mailfunnel/mailfunnel/ingest/ingesttest"
	"github.com/mailfunnel/mailfunnel/ingest/sendpulse"
)

// TestGolden compares the events of every testdata/<case>.json with
// testdata/<case>.golden; `go test ./ingest/sendpulse -run Golden -update`
// rewrites them.
func TestGolden(t *testing.T) {
	ingesttest.Golden(t, sendpulse.New(), "testdata")
}

func TestConformance(t *testing.T) {
	ingesttest.Run(t, sendpulse.New(), ingesttest.Valid(t, "testdata"))
}

func parse(t *testing.T, body string) ([]event.Event, error) {
	t.Helper()
	return sendpulse.New().Parse(ingesttest.Source(sendpulse.New()), []byte(body), ingesttest.Recv)
}

func TestMapping(t *testing.T) {
	for name, want := range map[string]event.Type{
		"delivered": event.Delivered, "undelivered": event.Undelivered,
		"opened": event.Opened, "clicked": event.Clicked, "unsubscribed": event.Unsubscribed,
		"spam_by_user": event.Complained, "soft_bounces": event.SoftBounce,
		"hard_bounces": event.HardBounce, "resubscribed": event.Subscribed,
		"open": event.Opened, "redirect": event.Clicked, "unsubscribe": event.Unsubscribed,
		"spam": event.Complained, "new_emails": event.Other, "delete": event.Other,
		"Opened": event.Other, "event_name": event.Other, "42": event.Other,
	} {
		t.Run(name, func(t *testing.T) {
			evs, err := parse(t, fmt.Sprintf(`[{"event": %q, "email": "a@b.example", "timestamp": 1}]`, name))
			require.NoError(t, err)
			require.Len(t, evs, 1)
			require.Equal(t, want, evs[0].Type)
			require.Equal(t, name, evs[0].ProviderEvent)
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		index int    // -1: ErrSyntax expected
		field string // for ElementError
		msg   string // substring of the message
	}{
		{"empty body", ``, -1, "", "offset 0"},
		{"not json", `hello`, -1, "", "offset 1"},
		{"truncated", `[{"event": "opened"`, -1, "", "offset"},
		{"unquoted url from the bulk docs", `[{"link_url": http://google.com, "event": "redirect"}]`, -1, "", "offset 15"},
		{"number body", `17`, -1, "", "JSON number, want an array"},
		{"string body", `"opened"`, -1, "", "JSON string"},
		{"null body", `null`, -1, "", "JSON null"},
		{"bad element index 3", `[{"event":"opened","email":"a@x.y"},{"event":"opened","email":"a@x.y"},{"event":"opened","email":"a@x.y"},7]`, 3, "", "want an object"},
		{"missing event", `[{"email": "a@x.y"}]`, 0, "event", "missing event name"},
		{"empty event", `[{"event": " ", "email": "a@x.y"}]`, 0, "event", "missing event name"},
		{"event object", `[{"event": {}, "email": "a@x.y"}]`, 0, "event", "want a string or a number"},
		{"missing recipient", `[{"event": "opened"}]`, 0, "recipient", "missing recipient"},
		{"blank recipient", `[{"event": "opened", "recipient": "  "}]`, 0, "recipient", "missing recipient"},
		{"recipient array", `[{"event": "opened", "recipient": ["a@x.y"]}]`, 0, "recipient", "got array"},
		{"bad timestamp", `[{"event": "opened", "email": "a@x.y", "timestamp": "yesterday"}]`, 0, "timestamp", "Unix seconds"},
		{"negative timestamp", `[{"event": "opened", "email": "a@x.y", "timestamp": -5}]`, 0, "timestamp", "Unix seconds"},
		{"millisecond timestamp", `[{"event": "opened", "email": "a@x.y", "timestamp": 1490954061000000}]`, 0, "timestamp", "milliseconds"},
		{"timestamp NaN", `[{"event": "opened", "email": "a@x.y", "timestamp": NaN}]`, 0, "timestamp", "invalid number"},
		{"code text", `[{"event": "undelivered", "email": "a@x.y", "smtp_server_response_code": "5xx"}]`, 0, "smtp_server_response_code", "SMTP reply code"},
		{"code fraction", `[{"event": "undelivered", "email": "a@x.y", "smtp_server_response_code": 550.5}]`, 0, "smtp_server_response_code", "SMTP reply code"},
		{"code too big", `[{"event": "undelivered", "email": "a@x.y", "smtp_server_response_code": 5500}]`, 0, "smtp_server_response_code", "SMTP reply code"},
		{"code bool", `[{"event": "undelivered", "email": "a@x.y", "smtp_server_response_code": true}]`, 0, "smtp_server_response_code", "got true"},
		{"subject object", `{"event": "opened", "email": "a@x.y", "subject": {"a": 1}}`, 0, "subject", "got object"},
		{"first bad element wins", `[{"event":"opened","email":"a@x.y"},{"event":"opened"},{}]`, 1, "recipient", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := parse(t, tc.body)
			require.Error(t, err)
			require.Nil(t, evs)
			require.Contains(t, err.Error(), tc.msg)
			if tc.index < 0 {
				require.ErrorIs(t, err, ingest.ErrSyntax)
				return
			}
			var ee *ingest.ElementError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, tc.index, ee.Index)
			require.Equal(t, tc.field, ee.Field)
		})
	}
}

func TestTooManyElements(t *testing.T) {
	one := `{"event":"opened","email":"a@x.y","timestamp":1},`
	body := "[" + strings.Repeat(one, sendpulse.MaxElements) + "]"
	evs, err := parse(t, body)
	require.NoError(t, err, "exactly MaxElements is fine (the trailing comma too)")
	require.Len(t, evs, sendpulse.MaxElements)

	body = "[" + strings.Repeat(one, sendpulse.MaxElements+1) + "]"
	_, err = parse(t, body)
	var ee *ingest.ElementError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, sendpulse.MaxElements, ee.Index)
	require.ErrorIs(t, err, sendpulse.ErrTooManyElements)
}

func TestEmptyAndSource(t *testing.T) {
	a := sendpulse.New()
	evs, err := a.Parse(ingest.Source{Name: "acme"}, []byte("[]"), ingesttest.Recv)
	require.NoError(t, err)
	require.Empty(t, evs)

	evs, err = a.Parse(ingest.Source{Name: "acme"}, []byte(`{"event":"opened","email":"A@X.Y"}`), ingesttest.Recv)
	require.NoError(t, err)
	require.Equal(t, "acme", evs[0].Source)
	require.Equal(t, "acme", evs[0].Account, "SendPulse's account is the source")
	require.Equal(t, "x.y", evs[0].RecipientDomain)

	_, err = a.Parse(ingest.Source{Name: "acme"}, []byte(`[]`), time.Time{})
	require.Error(t, err, "a zero receive time is a caller bug")
}

// TestSmoke parses the payload the contract smoke test posts: all 8 events
// must be accepted (it ends in a trailing comma).
func TestSmoke(t *testing.T) {
	body, err := os.ReadFile("../../../shared/smoke/sendpulse_seed.json")
	if errors.Is(err, os.ErrNotExist) {
		body, err = os.ReadFile("testdata/smoke_seed.json") // the same payload, kept in the repository
	}
	require.NoError(t, err)
	evs, err := parse(t, string(body))
	require.NoError(t, err)
	require.Len(t, evs, 8)
	var types []string
	for _, e := range evs {
		types = append(types, e.Type.String())
	}
	require.Equal(t, []string{"delivered", "undelivered", "opened", "clicked", "unsubscribed", "complained", "soft_bounce", "hard_bounce"}, types)
}

func TestBlankTrailingCommas(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`[1,2]`, `[1,2]`},
		{`[1,2,]`, `[1,2 ]`},
		{"[1,2, \n\t]", "[1,2  \n\t]"},
		{`{"a":1,}`, `{"a":1 }`},
		{`["a,]",]`, `["a,]" ]`},
		{`["a\",]",]`, `["a\",]" ]`},
		{`["a\\",]`, `["a\\" ]`},
		{`[,]`, `[,]`},
		{`[1,,]`, `[1,,]`},
		{`{"a":,}`, `{"a":,}`},
		{`[{},]`, `[{} ]`},
	} {
		var scratch []byte
		in := []byte(tc.in)
		got := sendpulse.BlankTrailingCommas(&scratch, in)
		require.Equal(t, tc.want, string(got), "in %s", tc.in)
		require.Equal(t, tc.in, string(in), "input modified")
		require.Len(t, got, len(in), "offsets must be kept")
	}
}

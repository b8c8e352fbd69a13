package emblue_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/ingest"
	"github.com/mailfunnel/mailfunnel/ingest/emblue"
	"github.com/mailfunnel/mailfunnel/ingest/ingesttest"
)

// TestGolden compares the events of every testdata/<case>.json with
// testdata/<case>.golden; `go test ./ingest/emblue -run Golden -update`
// rewrites them.
func TestGolden(t *testing.T) {
	ingesttest.Golden(t, emblue.New(), "testdata")
}

func TestConformance(t *testing.T) {
	ingesttest.Run(t, emblue.New(), ingesttest.Valid(t, "testdata"))
}

func parse(t *testing.T, body string) ([]event.Event, error) {
	t.Helper()
	return emblue.New().Parse(ingesttest.Source(emblue.New()), []byte(body), ingesttest.Recv)
}

func TestMapping(t *testing.T) {
	for _, tc := range []struct {
		id       string
		want     event.Type
		provider string
	}{
		{`1`, event.Sent, "1"}, {`2`, event.Opened, "2"}, {`3`, event.Clicked, "3"},
		{`4`, event.Subscribed, "4"}, {`5`, event.Unsubscribed, "5"}, {`6`, event.Complained, "6"},
		{`"1"`, event.Sent, "1"}, {`" 6 "`, event.Complained, "6"}, {`"006"`, event.Complained, "6"},
		{`0`, event.Other, "0"}, {`7`, event.Other, "7"}, {`"x"`, event.Other, "x"},
		{`1.0`, event.Other, "1.0"}, {`-1`, event.Other, "-1"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			evs, err := parse(t, `{"activity_id": `+tc.id+`, "email": "a@b.example", "timestamp": "2020-01-01 00:00:00"}`)
			require.NoError(t, err)
			require.Len(t, evs, 1)
			require.Equal(t, tc.want, evs[0].Type)
			require.Equal(t, tc.provider, evs[0].ProviderEvent)
		})
	}
}

func TestParseErrors(t *testing.T) {
	const ok = `{"activity_id": 2, "email": "a@x.y", "timestamp": "2016-10-05 14:15:24"}`
	for _, tc := range []struct {
		name  string
		body  string
		index int    // -1: ErrSyntax expected
		field string // for ElementError
		msg   string // substring of the message
	}{
		{"empty body", ``, -1, "", "offset 0"},
		{"not json", `activity_id=2`, -1, "", "offset 1"},
		{"typographic quotes of the docs", `{‘‘account_id’‘:1}`, -1, "", "offset 2"},
		{"two objects", ok + "\n" + ok, -1, "", "offset"},
		{"trailing comma", `{"activity_id": 2,}`, -1, "", "offset"},
		{"number body", `2`, -1, "", "JSON number"},
		{"bad element index 3", "[" + ok + "," + ok + "," + ok + `,"x"]`, 3, "", "want an object"},
		{"missing activity", `{"email": "a@x.y"}`, 0, "activity_id", "missing activity_id"},
		{"empty activity", `{"activity_id": "", "email": "a@x.y"}`, 0, "activity_id", "missing activity_id"},
		{"activity array", `{"activity_id": [2], "email": "a@x.y"}`, 0, "activity_id", "got array"},
		{"missing email", `{"activity_id": 2}`, 0, "email", "missing email"},
		{"email object", `{"activity_id": 2, "email": {}}`, 0, "email", "got object"},
		{"timestamp typo of the docs", `{"activity_id": 1, "email": "a@x.y", "timestamp": "2016-10-05 14:o5:24.365863"}`, 0, "timestamp", "yyyy-MM-dd"},
		{"timestamp date only", `{"activity_id": 1, "email": "a@x.y", "timestamp": "2016-10-05"}`, 0, "timestamp", "yyyy-MM-dd"},
		{"timestamp 31 February", `{"activity_id": 1, "email": "a@x.y", "timestamp": "2016-02-31 10:00:00"}`, 0, "timestamp", "yyyy-MM-dd"},
		{"timestamp 10 digit fraction", `{"activity_id": 1, "email": "a@x.y", "timestamp": "2016-02-01 10:00:00.1234567890"}`, 0, "timestamp", "yyyy-MM-dd"},
		{"timestamp dangling dot", `{"activity_id": 1, "email": "a@x.y", "timestamp": "2016-02-01 10:00:00."}`, 0, "timestamp", "yyyy-MM-dd"},
		{"timestamp before 1970", `{"activity_id": 1, "email": "a@x.y", "timestamp": "0001-01-01 00:00:00"}`, 0, "timestamp", "1970"},
		{"timestamp unix number", `{"activity_id": 1, "email": "a@x.y", "timestamp": 1475676324}`, 0, "timestamp", "yyyy-MM-dd"},
		{"account object", `{"activity_id": 1, "email": "a@x.y", "account_id": {}}`, 0, "account_id", "got object"},
		{"first bad element wins", "[" + ok + `,{"activity_id": 2},{}]`, 1, "email", ""},
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

func TestTimeZones(t *testing.T) {
	buenosAires, err := time.LoadLocation("America/Argentina/Buenos_Aires")
	require.NoError(t, err)
	newYork, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		loc  *time.Location
		ts   string
		want string // UTC, RFC 3339
	}{
		{"nil is UTC", nil, "2016-10-05 14:05:24.365863", "2016-10-05T14:05:24.365863Z"},
		{"buenos aires", buenosAires, "2016-10-05 14:05:24.365863", "2016-10-05T17:05:24.365863Z"},
		{"buenos aires T", buenosAires, "2016-10-05T14:05:24", "2016-10-05T17:05:24Z"},
		{"explicit offset wins", buenosAires, "2016-10-05T14:05:24+02:00", "2016-10-05T12:05:24Z"},
		{"explicit Z wins", buenosAires, "2016-10-05T14:05:24Z", "2016-10-05T14:05:24Z"},
		{"new york summer", newYork, "2016-07-01 12:00:00", "2016-07-01T16:00:00Z"},
		{"new york winter", newYork, "2016-01-01 12:00:00", "2016-01-01T17:00:00Z"},
		{"nanoseconds truncated", buenosAires, "2016-10-05 14:05:24.123456789", "2016-10-05T17:05:24.123456Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := ingest.Source{Provider: emblue.Name, Name: "ar", Location: tc.loc}
			evs, err := emblue.New().Parse(src, []byte(`{"activity_id":2,"email":"a@x.y","timestamp":"`+tc.ts+`"}`), ingesttest.Recv)
			require.NoError(t, err)
			want, err := time.Parse(time.RFC3339Nano, tc.want)
			require.NoError(t, err)
			require.Equal(t, want, evs[0].EventTime)
			require.Equal(t, time.UTC, evs[0].EventTime.Location())
		})
	}
}

func TestTooManyElements(t *testing.T) {
	one := `{"activity_id":2,"email":"a@x.y"},`
	body := "[" + strings.Repeat(one, emblue.MaxElements+1)
	body = body[:len(body)-1] + "]"
	_, err := parse(t, body)
	var ee *ingest.ElementError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, emblue.MaxElements, ee.Index)
	require.ErrorIs(t, err, emblue.ErrTooManyElements)
}

func TestEmptyAndSource(t *testing.T) {
	a := emblue.New()
	evs, err := a.Parse(ingest.Source{Name: "ar"}, []byte("[]"), ingesttest.Recv)
	require.NoError(t, err)
	require.Empty(t, evs)

	_, err = a.Parse(ingest.Source{Name: "ar"}, []byte(`{"activity_id":2,"email":"a@x.y"}`), time.Time{})
	require.Error(t, err, "a zero receive time is a caller bug")
}

// TestSmoke parses the lines the contract smoke test posts, one request
// each: every line is one event.
func TestSmoke(t *testing.T) {
	body, err := os.ReadFile("../../../shared/smoke/emblue_seed.jsonl")
	if errors.Is(err, os.ErrNotExist) {
		body, err = os.ReadFile("testdata/smoke_seed.jsonl") // the same lines, kept in the repository
	}
	require.NoError(t, err)
	var types []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		evs, err := parse(t, sc.Text())
		require.NoError(t, err, sc.Text())
		require.Len(t, evs, 1)
		require.Equal(t, "1001", evs[0].Account)
		require.Equal(t, "555001", evs[0].Campaign)
		types = append(types, evs[0].Type.String())
	}
	require.Equal(t, []string{"sent", "opened", "clicked", "subscribed", "unsubscribed", "complained"}, types)
}

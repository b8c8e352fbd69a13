// Package ingesttest is the conformance suite for ingest.Adapter
// implementations and the golden-file helper their tests share.
//
// Run checks, over bodies an adapter must accept, the properties that the
// ingest.Adapter contract promises for every provider: deterministic output,
// events that pass event.Validate with Source and Provider set, the receive
// time used exactly when an element has no timestamp, no retention of the
// body or of pooled parser memory, safe concurrent use, and errors that are
// either ingest.ErrSyntax or an *ingest.ElementError with a valid index.
// Check is the same per-input property check; fuzz targets call it so that
// what the fuzzer explores is held to the same contract.
package ingesttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/ingest"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the adapter's current output")

// Recv is the fixed receive time the suite and golden files use. It has
// nanoseconds on purpose: adapters must truncate to microseconds.
var Recv = time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)

// Source returns the source the suite parses with.
func Source(a ingest.Adapter) ingest.Source {
	return ingest.Source{Provider: a.Provider(), Name: a.Provider() + "-test"}
}

// Run checks the properties common to all adapters. valid must hold bodies
// the adapter accepts; the suite also derives invalid inputs from them.
func Run(t *testing.T, a ingest.Adapter, valid [][]byte) {
	t.Helper()
	require.NotEmpty(t, valid, "the conformance suite needs valid bodies")
	src := Source(a)

	t.Run("valid", func(t *testing.T) {
		for i, body := range valid {
			evs, err := a.Parse(src, body, Recv)
			require.NoError(t, err, "valid body %d: %s", i, body)
			require.NotEmpty(t, evs, "valid body %d yields no events", i)
			Check(t, a, src, body)
		}
	})

	t.Run("empty_array", func(t *testing.T) {
		evs, err := a.Parse(src, []byte(" [ ] "), Recv)
		require.NoError(t, err)
		require.Empty(t, evs)
	})

	t.Run("default_source", func(t *testing.T) {
		// The contract's source defaults to the provider's name.
		evs, err := a.Parse(ingest.Source{Provider: a.Provider()}, valid[0], Recv)
		require.NoError(t, err)
		for _, e := range evs {
			require.Equal(t, a.Provider(), e.Source)
		}
	})

	t.Run("location", func(t *testing.T) {
		loc := time.FixedZone("UTC-3", -3*3600)
		for _, body := range valid {
			s := src
			s.Location = loc
			Check(t, a, s, body)
		}
	})

	t.Run("zero_recv", func(t *testing.T) {
		// A caller bug, but it must not produce events that fail Validate.
		evs, err := a.Parse(src, valid[0], time.Time{})
		if err == nil {
			requireConformant(t, a, src, valid[0], time.Time{}, evs)
		}
	})

	t.Run("garbage", func(t *testing.T) {
		for _, body := range garbage {
			Check(t, a, src, []byte(body))
		}
	})

	t.Run("truncated", func(t *testing.T) {
		for _, body := range valid {
			step := max(1, len(body)/200)
			for n := 0; n < len(body); n += step {
				Check(t, a, src, body[:n])
			}
		}
	})

	t.Run("mutated", func(t *testing.T) {
		// Replace bytes with characters that matter to JSON and to the
		// field parsers, at positions spread over each body.
		for _, body := range valid {
			step := max(1, len(body)/100)
			for n := 0; n < len(body); n += step {
				for _, c := range []byte(`"{}[],:0-. x\`) {
					m := bytes.Clone(body)
					m[n] = c
					Check(t, a, src, m)
				}
			}
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		want := make([][]event.Event, len(valid))
		for i, body := range valid {
			evs, err := a.Parse(src, body, Recv)
			require.NoError(t, err)
			want[i] = evs
		}
		var wg sync.WaitGroup
		errs := make(chan error, runtime.GOMAXPROCS(0)*2)
		for g := 0; g < cap(errs); g++ {
			wg.Go(func() {
				for iter := 0; iter < 20; iter++ {
					i := (g + iter) % len(valid)
					evs, err := a.Parse(src, valid[i], Recv)
					if err == nil && !equalEvents(evs, want[i]) {
						err = fmt.Errorf("body %d parsed concurrently differs", i)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

// garbage are inputs every adapter must reject or accept without panicking
// and with a contract error.
var garbage = []string{
	"", " ", "x", "[", "]", "{", "}", "[}", "{]", "null", "true", "0", "-1", `"s"`,
	"[null]", "[1]", `["a"]`, "[[]]", "[{}]", "{}", `[{}, 1]`, `[{"a":1},{"b":2},{"c":3},7]`,
	"[,]", "[1,,]", `{"a":}`, `{"a" 1}`, `[{"a":1}]]`, "\xff\xfe", "[\"\xff\"]",
	strings.Repeat("[", 1000) + strings.Repeat("]", 1000),
	`[{"event":{}}]`, `[{"activity_id":{}}]`, `[{"event":"opened","timestamp":"x"}]`,
	`{"activity_id":"1","timestamp":"yesterday"}`, `{"activity_id":[1]}`,
	`[{"event":"delivered","recipient":"a@b.c","smtp_server_response_code":"abc"}]`,
	`{"activity_id":2,"email":"a@b.c","timestamp":"2016-02-30 10:00:00"}`,
}

// Check parses body with a and checks the properties that hold for any
// input: no panic; an accepted body yields conformant events, the same ones
// on every parse and whatever happens to the body afterwards; a rejected
// body yields no events and an ErrSyntax or an *ElementError whose index
// lies within the body's elements (when they can be counted).
func Check(tb testing.TB, a ingest.Adapter, src ingest.Source, body []byte) {
	tb.Helper()
	orig := bytes.Clone(body)
	evs, err := parse(tb, a, src, body, Recv)
	require.Equal(tb, orig, body, "Parse modified its input")
	if err != nil {
		require.Empty(tb, evs, "Parse returned events with an error")
		requireContractError(tb, err, body)
		_, err2 := parse(tb, a, src, body, Recv)
		require.EqualError(tb, err2, err.Error(), "second parse of a rejected body differs")
		return
	}
	requireConformant(tb, a, src, body, Recv, evs)

	// Deterministic, and independent of the body's memory afterwards: parse
	// a copy, overwrite the copy, parse something else (reusing any pooled
	// parser state), and compare with the first result.
	cp := bytes.Clone(body)
	evs2, err := parse(tb, a, src, cp, Recv)
	require.NoError(tb, err, "second parse of an accepted body fails")
	for i := range cp {
		cp[i] = 'x'
	}
	_, _ = parse(tb, a, src, []byte(`[{"event":"opened","activity_id":2,"email":"zz@zz.zz","timestamp":"2020-01-01 00:00:00"}]`), Recv)
	_, _ = parse(tb, a, src, bytes.Repeat([]byte{' '}, len(body)), Recv)
	require.True(tb, equalEvents(evs, evs2), "two parses of one body differ or events alias the body:\n%s\n%s", Format(evs), Format(evs2))

	// The receive time is used exactly when an element has no timestamp.
	later := Recv.Add(time.Hour + time.Nanosecond)
	evs3, err := parse(tb, a, src, body, later)
	require.NoError(tb, err)
	require.Len(tb, evs3, len(evs))
	for i := range evs {
		require.Equal(tb, evs[i].TimeFromReceive, evs3[i].TimeFromReceive)
		if evs[i].TimeFromReceive {
			require.Equal(tb, later.Truncate(time.Microsecond), evs3[i].EventTime)
		} else {
			require.Equal(tb, evs[i].EventTime, evs3[i].EventTime, "event time depends on the receive time")
		}
	}
}

// parse calls Parse and turns a panic into a test failure naming the input.
func parse(tb testing.TB, a ingest.Adapter, src ingest.Source, body []byte, recv time.Time) (evs []event.Event, err error) {
	tb.Helper()
	defer func() {
		if r := recover(); r != nil {
			tb.Fatalf("Parse panics on %q: %v", body, r)
		}
	}()
	return a.Parse(src, body, recv)
}

func requireContractError(tb testing.TB, err error, body []byte) {
	tb.Helper()
	require.NotEmpty(tb, err.Error())
	var ee *ingest.ElementError
	switch {
	case errors.Is(err, ingest.ErrSyntax):
	case errors.As(err, &ee):
		require.GreaterOrEqual(tb, ee.Index, 0, "element index: %v", err)
		if n, ok := countElements(body); ok {
			require.Less(tb, ee.Index, n, "element index beyond the %d elements: %v", n, err)
		}
		require.Error(tb, ee.Err, "ElementError without a cause")
	default:
		tb.Fatalf("error is neither ErrSyntax nor *ElementError: %v", err)
	}
}

// countElements returns how many elements a strictly valid JSON body holds:
// the array's length, or 1 for an object.
func countElements(body []byte) (int, bool) {
	v, err := fastjson.ParseBytes(body)
	if err != nil || fastjson.ValidateBytes(body) != nil {
		return 0, false
	}
	switch v.Type() {
	case fastjson.TypeArray:
		a, _ := v.Array()
		return len(a), true
	case fastjson.TypeObject:
		return 1, true
	}
	return 0, false
}

func requireConformant(tb testing.TB, a ingest.Adapter, src ingest.Source, body []byte, recv time.Time, evs []event.Event) {
	tb.Helper()
	source := src.Name
	if source == "" {
		source = a.Provider()
	}
	if n, ok := countElements(body); ok {
		require.Len(tb, evs, n, "one event per element")
	}
	for i := range evs {
		e := &evs[i]
		require.NoError(tb, e.Validate(), "event %d of %q", i, body)
		require.Equal(tb, source, e.Source, "event %d: source", i)
		require.Equal(tb, a.Provider(), e.Provider, "event %d: provider", i)
		require.Zero(tb, e.Seq, "event %d: seq is the log's to assign", i)
		require.Empty(tb, e.BounceClass+e.BounceReason, "event %d: bounce fields are the engine's", i)
		require.Equal(tb, recv.UTC().Truncate(time.Microsecond), e.ReceivedTime, "event %d: received_time", i)
		require.Equal(tb, time.UTC, e.EventTime.Location(), "event %d: event_time not UTC", i)
		require.Equal(tb, e.EventTime, e.EventTime.Truncate(time.Microsecond), "event %d: event_time finer than microseconds", i)
		if e.TimeFromReceive {
			require.Equal(tb, e.ReceivedTime, e.EventTime, "event %d: time from receive", i)
		}
	}
}

// equalEvents compares events field by field, times with Equal.
func equalEvents(a, b []event.Event) bool {
	return slices.EqualFunc(a, b, func(x, y event.Event) bool {
		if !x.EventTime.Equal(y.EventTime) || !x.ReceivedTime.Equal(y.ReceivedTime) {
			return false
		}
		x.EventTime, x.ReceivedTime, y.EventTime, y.ReceivedTime = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		return x == y
	})
}

// goldenEvent is an event with the contract's field names, in its order.
type goldenEvent struct {
	Seq             uint64 `json:"seq"`
	Source          string `json:"source"`
	Provider        string `json:"provider"`
	ProviderEvent   string `json:"provider_event"`
	Account         string `json:"account"`
	Campaign        string `json:"campaign"`
	MessageID       string `json:"message_id"`
	Recipient       string `json:"recipient"`
	RecipientDomain string `json:"recipient_domain"`
	Type            string `json:"type"`
	EventTime       string `json:"event_time"`
	ReceivedTime    string `json:"received_time"`
	TimeFromReceive bool   `json:"time_from_receive"`
	SMTPCode        int32  `json:"smtp_code"`
	SMTPStatus      string `json:"smtp_status"`
	SMTPResponse    string `json:"smtp_response"`
	BounceClass     string `json:"bounce_class"`
	BounceReason    string `json:"bounce_reason"`
	URL             string `json:"url"`
	Subject         string `json:"subject"`
	Sender          string `json:"sender"`
	SendType        string `json:"send_type"`
}

const goldenTime = "2006-01-02T15:04:05.000000Z07:00"

// Format renders events one JSON object per line with the contract's field
// names (plus time_from_receive), the form golden files hold.
func Format(evs []event.Event) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep <addr> in SMTP responses readable
	for _, e := range evs {
		g := goldenEvent{
			Seq: e.Seq, Source: e.Source, Provider: e.Provider, ProviderEvent: e.ProviderEvent,
			Account: e.Account, Campaign: e.Campaign, MessageID: e.MessageID,
			Recipient: e.Recipient, RecipientDomain: e.RecipientDomain, Type: e.Type.String(),
			EventTime: e.EventTime.Format(goldenTime), ReceivedTime: e.ReceivedTime.Format(goldenTime),
			TimeFromReceive: e.TimeFromReceive, SMTPCode: e.SMTPCode, SMTPStatus: e.SMTPStatus,
			SMTPResponse: e.SMTPResponse, BounceClass: e.BounceClass, BounceReason: e.BounceReason,
			URL: e.URL, Subject: e.Subject, Sender: e.Sender, SendType: e.SendType,
		}
		if err := enc.Encode(&g); err != nil {
			panic(err) // strings and numbers only: cannot fail
		}
	}
	return buf.Bytes()
}

// Golden parses every dir/*.json with a (source Source(a), receive time
// Recv) and compares the events, rendered by Format, with the case's
// .golden file. With -update it rewrites the golden files instead. Each
// case is also held to Check.
func Golden(t *testing.T, a ingest.Adapter, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no golden cases in %s", dir)
	src := Source(a)
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(file)
			require.NoError(t, err)
			evs, err := a.Parse(src, body, Recv)
			require.NoError(t, err, "golden case %s", file)
			Check(t, a, src, body)
			got := Format(evs)
			golden := strings.TrimSuffix(file, ".json") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden file: run `go test -run Golden -update` in the adapter's package to create it")
			require.Equal(t, string(want), string(got),
				"%s differs from the adapter's output; if the change is intended, run `go test -run Golden -update` in the package and review the diff", golden)
		})
	}
}

// Valid returns the bodies of dir/*.json, for Run.
func Valid(tb testing.TB, dir string) [][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(tb, err)
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(tb, err)
		out = append(out, b)
	}
	return out
}

package sendpulse_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/ingest/ingesttest"
	"github.com/mailfunnel/mailfunnel/ingest/sendpulse"
)

// maxFuzzInput skips inputs that only make the fuzzer slow.
const maxFuzzInput = 1 << 20

// addTestdata seeds f with every testdata/*.json body.
func addTestdata(f *testing.F) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(f, err)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(b)
	}
}

// FuzzParse holds arbitrary bodies to the adapter contract (see
// ingesttest.Check): no panic, accepted bodies give valid events that parse
// identically again, rejected ones give ErrSyntax or an ElementError with a
// valid index.
//
//	go test ./ingest/sendpulse -run '^$' -fuzz '^FuzzParse$' -fuzztime 20s
func FuzzParse(f *testing.F) {
	addTestdata(f)
	f.Add([]byte(`[{"event":"opened","email":"a@b.c","timestamp":"1.5e9"},]`))
	f.Add([]byte(`{"event":"x","smtp_server_response_code":"550.0"}`))
	a := sendpulse.New()
	src := ingesttest.Source(a)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxFuzzInput {
			t.Skip()
		}
		ingesttest.Check(t, a, src, body)
	})
}

// FuzzParseCode checks the number-or-string code parser: no panic, results
// within 0-999, and a number literal means the same written as a string.
//
//	go test ./ingest/sendpulse -run '^$' -fuzz '^FuzzParseCode$' -fuzztime 20s
func FuzzParseCode(f *testing.F) {
	for _, s := range []string{"", "250", "550", " 452 ", "550.0", "5.5e2", "-0", "0", "999", "1000", "5.7.1", "abc", "01", "NaN", "1e308"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code, err := sendpulse.ParseCode([]byte(s))
		if err != nil {
			require.Zero(t, code)
			return
		}
		require.GreaterOrEqual(t, code, int32(0))
		require.LessOrEqual(t, code, int32(999))
		if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 999 && s[0] != '+' {
			require.Equal(t, int32(n), code, "plain integer %q", s)
		}
		// The same text as a JSON number and as a JSON string maps alike.
		if s != "" && !bytes.ContainsAny([]byte(s), " \t\r\n\"\\") {
			a := sendpulse.New()
			src := ingesttest.Source(a)
			asNum, errNum := a.Parse(src, []byte(`{"event":"undelivered","email":"a@b.c","smtp_server_response_code":`+s+`}`), ingesttest.Recv)
			asStr, errStr := a.Parse(src, []byte(`{"event":"undelivered","email":"a@b.c","smtp_server_response_code":"`+s+`"}`), ingesttest.Recv)
			require.NoError(t, errStr)
			if errNum == nil {
				require.Equal(t, asStr[0].SMTPCode, asNum[0].SMTPCode)
			}
		}
	})
}

// FuzzParseUnix checks the Unix-seconds parser: no panic; accepted values
// are UTC, whole microseconds, within 1970-9999, and agree with the integer
// part read by strconv.
//
//	go test ./ingest/sendpulse -run '^$' -fuzz '^FuzzParseUnix$' -fuzztime 20s
func FuzzParseUnix(f *testing.F) {
	for _, s := range []string{"1490954061", "1490954061.5", "1490954061.123456789", "1.49e9", "0", "-1", "253402300799", "253402300800", "1e400", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return // callers treat empty as absent before parsing
		}
		ts, err := sendpulse.ParseUnix([]byte(s))
		if err != nil {
			return
		}
		require.Equal(t, time.UTC, ts.Location())
		require.Equal(t, ts, ts.Truncate(time.Microsecond))
		require.False(t, ts.Before(time.Unix(0, 0)))
		require.False(t, ts.After(time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			require.Equal(t, n, ts.Unix())
		}
	})
}

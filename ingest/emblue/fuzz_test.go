package emblue_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/ingest/emblue"
	"github.com/mailfunnel/mailfunnel/ingest/ingesttest"
)

// maxFuzzInput skips inputs that only make the fuzzer slow.
const maxFuzzInput = 1 << 20

// FuzzParse holds arbitrary bodies to the adapter contract (see
// ingesttest.Check): no panic, accepted bodies give valid events that parse
// identically again, rejected ones give ErrSyntax or an ElementError with a
// valid index.
//
//	go test ./ingest/emblue -run '^$' -fuzz '^FuzzParse$' -fuzztime 20s
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(f, err)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(b)
	}
	a := emblue.New()
	src := ingesttest.Source(a)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxFuzzInput {
			t.Skip()
		}
		ingesttest.Check(t, a, src, body)
	})
}

// FuzzParseTime checks the timestamp parser against time.ParseInLocation:
// no panic; an accepted timestamp is UTC, whole microseconds, within
// 1970-9999, and survives formatting and parsing again; where the layout
// emBlue documents applies, both parsers agree.
//
//	go test ./ingest/emblue -run '^$' -fuzz '^FuzzParseTime$' -fuzztime 20s
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2016-10-05 14:05:24.365863", "2016-10-05 14:05:24", "2016-10-05T14:05:24.5Z",
		"2016-10-05T14:05:24-03:00", "2016-02-29 23:59:59.999999999", "2016-10-05 14:o5:24.365863",
		"2016-03-13 02:30:00", "1969-12-31 23:59:59", "9999-12-31 23:59:59+01:00",
	} {
		f.Add(s, "America/Argentina/Buenos_Aires")
		f.Add(s, "America/New_York")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, s, zone string) {
		loc, err := time.LoadLocation(zone) // "" is UTC
		if err != nil {
			return
		}
		ts, err := emblue.ParseTime([]byte(s), loc)
		const layout = "2006-01-02 15:04:05.999999999"
		std, stdErr := time.ParseInLocation(layout, s, loc)
		// Comparable where the text has the documented fixed widths (the
		// standard parser also takes one-digit or space-padded fields and
		// a comma before the fraction, which emBlue does not send and
		// ParseTime refuses).
		fixed := len(s) >= 19 && (len(s) == 19 || s[19] == '.')
		for i := 0; fixed && i < 19; i++ {
			switch i {
			case 4, 7:
				fixed = s[i] == '-'
			case 10:
				fixed = s[i] == ' '
			case 13, 16:
				fixed = s[i] == ':'
			default:
				fixed = s[i] >= '0' && s[i] <= '9'
			}
		}
		stdComparable := fixed && stdErr == nil && len(s) <= 29 &&
			!std.Before(time.Unix(0, 0)) && std.UTC().Year() <= 9999
		if err != nil {
			require.False(t, stdComparable, "time.ParseInLocation accepts %q (%v), ParseTime says %v", s, std, err)
			return
		}
		require.Equal(t, time.UTC, ts.Location())
		require.Equal(t, ts, ts.Truncate(time.Microsecond))
		require.False(t, ts.Before(time.Unix(0, 0)))
		if stdComparable {
			require.True(t, std.Truncate(time.Microsecond).Equal(ts), "%q: ParseInLocation %v, ParseTime %v", s, std, ts)
		}
		again, err := emblue.ParseTime([]byte(ts.Format("2006-01-02T15:04:05.000000Z07:00")), loc)
		require.NoError(t, err)
		require.Equal(t, ts, again)
	})
}

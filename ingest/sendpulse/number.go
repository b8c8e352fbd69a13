package sendpulse

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/mailfunnel/mailfunnel/ingest/jsonfield"
)

// maxUnix is 9999-12-31T23:59:59Z. Later timestamps are almost always
// milliseconds sent where seconds are documented; rejecting them is better
// than storing an event dated in the year 50000.
const maxUnix = 253402300799

var errTimestamp = errors.New("want Unix seconds (a number or numeric string)")

// parseUnix parses Unix seconds given as a JSON number literal or the text of
// a numeric string ("1490954061", "1490954061.25", "1.490954061e9"). The
// fraction is read digit by digit rather than through a float so that
// "1490954061.123456" keeps its microseconds exactly. The result is UTC,
// truncated to microseconds like everything the log stores.
func parseUnix(b []byte) (time.Time, error) {
	if !jsonfield.ValidNumber(b) || b[0] == '-' {
		return time.Time{}, fmt.Errorf("%w, got %q", errTimestamp, b)
	}
	var sec, nsec int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		sec = sec*10 + int64(b[i]-'0')
		if sec > maxUnix {
			return time.Time{}, fmt.Errorf("timestamp %q is after year 9999 (milliseconds instead of seconds?)", b)
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		scale := int64(1e8)
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			nsec += int64(b[i]-'0') * scale
			scale /= 10
		}
	}
	if i < len(b) {
		// An exponent: rare enough to take the float path.
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil || f < 0 || f > maxUnix {
			return time.Time{}, fmt.Errorf("%w, got %q", errTimestamp, b)
		}
		whole := math.Floor(f)
		sec, nsec = int64(whole), int64(math.Round((f-whole)*1e6))*1e3
	}
	return time.Unix(sec, nsec).UTC().Truncate(time.Microsecond), nil
}

var errCode = errors.New("want an SMTP reply code (0-999) as a number or numeric string")

// parseCode parses an SMTP reply code given as a number literal or the text
// of a numeric string. SendPulse sends both ("250" and 550). Integral values
// written as 550.0 or 5.5e2 are accepted; anything else, or a value outside
// the three-digit range of RFC 5321 reply codes, is an error. Empty text
// means absent and yields 0.
func parseCode(b []byte) (int32, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) <= 3 {
		n := int32(0)
		for _, c := range b {
			if c < '0' || c > '9' {
				goto slow
			}
			n = n*10 + int32(c-'0')
		}
		return n, nil
	}
slow:
	if !jsonfield.ValidNumber(b) {
		return 0, fmt.Errorf("%w, got %q", errCode, b)
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f > 999 {
		return 0, fmt.Errorf("%w, got %q", errCode, b)
	}
	return int32(f), nil
}

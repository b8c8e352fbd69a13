package emblue

import (
	"errors"
	"fmt"
	"time"
)

var errTimestamp = errors.New(`want "yyyy-MM-dd HH:mm:ss.ffffff" or RFC 3339`)

// minTime and maxTime bound accepted timestamps. Earlier dates are not
// email activity (and year 1 would be Go's zero time, which events may not
// carry); later ones do not fit the formats downstream.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// parseTime parses emBlue's "yyyy-MM-dd HH:mm:ss.ffffff" in loc (nil means
// UTC), with a fraction of 0 to 9 digits or none. It also takes 'T' in place
// of the space and a trailing "Z" or "±hh:mm" offset (RFC 3339), which then
// wins over loc. A wall time that falls in a daylight-saving gap or overlap
// of loc resolves as time.Date does. The result is UTC, truncated to
// microseconds like everything the log stores.
//
// It is written by hand because time.ParseInLocation is several times
// slower and accepts neither the 'T' variant with the same layout nor a
// bound on the fraction.
func parseTime(s []byte, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	bad := func() (time.Time, error) { return time.Time{}, fmt.Errorf("%w, got %q", errTimestamp, s) }
	if len(s) < len("2006-01-02 15:04:05") || s[4] != '-' || s[7] != '-' ||
		(s[10] != ' ' && s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':' {
		return bad()
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return bad()
	}
	rest := s[19:]
	nsec := 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		scale := 100000000
		for ; n < len(rest) && rest[n] >= '0' && rest[n] <= '9'; n++ {
			if n > 9 {
				return bad()
			}
			nsec += int(rest[n]-'0') * scale
			scale /= 10
		}
		if n == 1 {
			return bad()
		}
		rest = rest[n:]
	}
	zone := loc
	switch {
	case len(rest) == 0:
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
		zone = time.UTC
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		h, okh := digits(rest[1:3])
		m, okm := digits(rest[4:6])
		if !okh || !okm || h > 23 || m > 59 {
			return bad()
		}
		off := h*3600 + m*60
		if rest[0] == '-' {
			off = -off
		}
		zone = time.FixedZone("", off)
	default:
		return bad()
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, zone).UTC()
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, fmt.Errorf("timestamp %q is outside the years 1970 to 9999", s)
	}
	return t.Truncate(time.Microsecond), nil
}

// digits parses a fixed-width run of ASCII digits.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

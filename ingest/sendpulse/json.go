package sendpulse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mailfunnel/mailfunnel/ingest"
	"github.com/valyala/fastjson"
)

// blankTrailingCommas returns body with every comma that is followed only by
// white space before a closing ']' or '}' (outside strings) replaced by a
// space. SendPulse's own documentation shows such a comma, so senders built
// from it produce them. Replacing instead of deleting keeps byte offsets in
// error messages equal to offsets in the body the sender posted.
//
// body is never modified: the first comma found makes a copy in *scratch, so
// the common case (no trailing comma) costs one scan and no copy. A comma is
// only blanked after a value (not after '[', '{', ',' or ':'), so "[,]" stays
// invalid.
func blankTrailingCommas(scratch *[]byte, body []byte) []byte {
	out := body
	copied := false
	inString, escaped := false, false
	var last byte // the last significant byte outside strings
	for i := 0; i < len(body); i++ {
		c := body[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
				last = '"'
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			inString = true
			continue
		case ',':
			if last != 0 && last != '[' && last != '{' && last != ',' && last != ':' && closesNext(body[i+1:]) {
				if !copied {
					*scratch = append((*scratch)[:0], body...)
					out = *scratch
					copied = true
				}
				out[i] = ' '
				continue // last stays the value before the comma
			}
		}
		last = c
	}
	return out
}

// closesNext reports whether b starts, after white space, with ']' or '}'.
func closesNext(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		case ']', '}':
			return true
		default:
			return false
		}
	}
	return false
}

// syntaxError wraps ingest.ErrSyntax with where the body stops being JSON.
// fastjson's errors quote the unparsed tail but carry no offset, so on this
// (rare) path the body is scanned again by encoding/json, whose SyntaxError
// has one.
func syntaxError(body []byte, perr error) error {
	var raw json.RawMessage
	var se *json.SyntaxError
	if err := json.Unmarshal(body, &raw); errors.As(err, &se) {
		return fmt.Errorf("%w: at byte offset %d: %s", ingest.ErrSyntax, se.Offset, se.Error())
	}
	return fmt.Errorf("%w: %s", ingest.ErrSyntax, perr)
}

// errNotScalar is returned for a field that should hold a string or a number.
var errNotScalar = errors.New("want a string or a number")

// scalar returns the text of a string or number value: the unescaped string
// or the number's literal. Strings keep their white space (see trimmed). A
// missing field or JSON null yields nil. A number's literal is appended to
// buf (fastjson exposes it only through MarshalTo), so a caller's stack
// array avoids an allocation. The bytes alias the parser's memory or buf and
// must be copied before they are kept.
func scalar(v *fastjson.Value, buf []byte) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return nil, nil
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return b, nil
	case fastjson.TypeNumber:
		// fastjson accepts loose literals such as NaN or 01; the fields we
		// keep must hold real JSON numbers.
		lit := v.MarshalTo(buf[:0])
		if !validNumber(lit) {
			return nil, fmt.Errorf("invalid number %q", lit)
		}
		return lit, nil
	default:
		return nil, fmt.Errorf("%w, got %s", errNotScalar, v.Type())
	}
}

// trimmed is scalar without surrounding white space: for ids, codes, times
// and names, where the spaces are noise rather than content.
func trimmed(v *fastjson.Value, buf []byte) ([]byte, error) {
	b, err := scalar(v, buf)
	return bytes.TrimSpace(b), err
}

// validNumber reports whether s is a number in the JSON grammar.
func validNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(s)
}

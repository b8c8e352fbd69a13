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
// body is never modified: the first comma found makes a copy in *scratch.
// A comma is only blanked after a value (not after '[', '{', ',' or ':'),
// so "[,]" stays invalid. Bodies without a ",]" or ",}" pattern anywhere,
// the common case, are returned after a vectorised search for closers; the
// exact pass skips strings with the same search.
func blankTrailingCommas(scratch *[]byte, body []byte) []byte {
	if !mayHaveTrailingComma(body) {
		return body
	}
	out := body
	copied := false
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			i = stringEnd(body, i)
		case ',':
			if closesNext(body[i+1:]) && afterValue(body[:i]) {
				if !copied {
					*scratch = append((*scratch)[:0], body...)
					out = *scratch
					copied = true
				}
				out[i] = ' '
			}
		}
	}
	return out
}

// mayHaveTrailingComma reports whether some ']' or '}' is preceded, across
// white space, by a comma, ignoring whether either is inside a string.
func mayHaveTrailingComma(body []byte) bool {
	for _, closer := range [...]byte{']', '}'} {
		for i := 0; ; {
			j := bytes.IndexByte(body[i:], closer)
			if j < 0 {
				break
			}
			i += j
			k := i - 1
			for k >= 0 && isSpace(body[k]) {
				k--
			}
			if k >= 0 && body[k] == ',' {
				return true
			}
			i++
		}
	}
	return false
}

// stringEnd returns the index of the quote that closes the string opening
// at body[start], or len(body) when it is unterminated (the parser reports
// that).
func stringEnd(body []byte, start int) int {
	for j := start + 1; ; j++ {
		k := bytes.IndexByte(body[j:], '"')
		if k < 0 {
			return len(body)
		}
		j += k
		backslashes := 0
		for p := j - 1; p > start && body[p] == '\\'; p-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return j
		}
	}
}

// afterValue reports whether the last non-space byte of b ends a value, as
// opposed to '[', '{', ',' or ':' (or nothing), after which a comma is an
// error that must stay one.
func afterValue(b []byte) bool {
	k := len(b) - 1
	for k >= 0 && isSpace(b[k]) {
		k--
	}
	if k < 0 {
		return false
	}
	switch b[k] {
	case '[', '{', ',', ':':
		return false
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// closesNext reports whether b starts, after white space, with ']' or '}'.
func closesNext(b []byte) bool {
	for _, c := range b {
		if !isSpace(c) {
			return c == ']' || c == '}'
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

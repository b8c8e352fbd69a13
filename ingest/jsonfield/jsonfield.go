// Package jsonfield reads the fields of provider webhook JSON the way every
// mailfunnel adapter needs: values that may be strings or numbers, trimmed
// ids, strictly checked numbers, and syntax errors that name a byte offset.
// It is shared by the adapters so that each quirk is handled once.
package jsonfield

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/valyala/fastjson"

	"github.com/mailfunnel/mailfunnel/ingest"
)

// SyntaxError wraps ingest.ErrSyntax with where the body stops being JSON.
// fastjson's errors quote the unparsed tail but carry no offset, so on this
// (rare) path the body is scanned again by encoding/json, whose SyntaxError
// has one.
func SyntaxError(body []byte, perr error) error {
	var raw json.RawMessage
	var se *json.SyntaxError
	if err := json.Unmarshal(body, &raw); errors.As(err, &se) {
		return fmt.Errorf("%w: at byte offset %d: %s", ingest.ErrSyntax, se.Offset, se.Error())
	}
	return fmt.Errorf("%w: %s", ingest.ErrSyntax, perr)
}

// ErrNotScalar is returned for a field that should hold a string or a number.
var ErrNotScalar = errors.New("want a string or a number")

// Scalar returns the text of a string or number value: the unescaped string
// or the number's literal. Strings keep their white space (see Trimmed). A
// missing field or JSON null yields nil. A number's literal is appended to
// buf (fastjson exposes it only through MarshalTo), so a caller's stack
// array avoids an allocation. The bytes alias the parser's memory or buf and
// must be copied before they are kept.
func Scalar(v *fastjson.Value, buf []byte) ([]byte, error) {
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
		if !ValidNumber(lit) {
			return nil, fmt.Errorf("invalid number %q", lit)
		}
		return lit, nil
	default:
		return nil, fmt.Errorf("%w, got %s", ErrNotScalar, v.Type())
	}
}

// Trimmed is Scalar without surrounding white space: for ids and times,
// where the spaces are noise rather than content.
func Trimmed(v *fastjson.Value, buf []byte) ([]byte, error) {
	b, err := Scalar(v, buf)
	return bytes.TrimSpace(b), err
}

// ValidNumber reports whether s is a number in the JSON grammar.
func ValidNumber(s []byte) bool {
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

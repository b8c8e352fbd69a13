package sendpulse

import (
	"bytes"
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

package bounce

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Normalize prepares a server reply for matching (BOUNCES.md §3 step 1): it
// lowercases, folds Latin diacritics ("boîte" → "boite", "usuário" →
// "usuario") and typographic quotes, turns every run of white space and
// control characters into one space, drops the code prefix of continuation
// lines of a multi-line reply ("550-5.7.1 … 550 5.7.1 …" keeps only the first
// prefix), removes the name of the relaying host from wrappers such as
// "host mx.example.com[192.0.2.1] said:" (host names like "spamfilter.example"
// would otherwise look like causes) and removes provider boilerplate that
// names a cause it is not reporting ("to protect our users from spam").
//
// The SMTP stage ("after MAIL FROM", "in reply to MAIL FROM command") is kept
// on purpose: the sender rules use it. Normalize is idempotent.
func Normalize(text string) string {
	s := fold(text)
	if strings.Contains(s, "host ") || strings.Contains(s, "mx: ") || strings.Contains(s, "server at ") {
		s = stripHosts(s)
	}
	if strings.Contains(s, "spam") || strings.Contains(s, "google tried") {
		for _, b := range boilerplate {
			if strings.Contains(s, b) {
				s = strings.ReplaceAll(s, b, " ")
			}
		}
	}
	if strings.Contains(s, ",") && strings.Contains(s, "-re") {
		for _, c := range powerMTACategories {
			s = strings.ReplaceAll(s, c, ",")
		}
	}
	s = stripContinuations(s)
	return collapse(s)
}

// boilerplate is prose that mentions a cause without reporting it: Gmail adds
// "to protect our users from spam" to authentication and reputation blocks,
// and its relay DSNs say the message "was rejected by the recipient domain"
// whatever the reason.
var boilerplate = []string{
	"to reduce the amount of spam sent to gmail",
	"to best protect our users from spam and phishing",
	"to protect our users from spam and phishing",
	"to best protect our users from spam",
	"to protect our users from spam",
	"google tried to deliver your message, but it was rejected by the server for the recipient domain",
	"google tried to deliver your message, but it was rejected by the recipient domain",
}

// powerMTACategories are PowerMTA's own bounce categories, present as CSV
// fields in accounting records; "policy-related" would otherwise read as a
// policy rejection.
var powerMTACategories = []string{
	",bad-configuration,", ",bad-connection,", ",bad-domain,", ",bad-mailbox,",
	",content-related,", ",inactive-mailbox,", ",invalid-sender,", ",message-expired,",
	",no-answer-from-host,", ",policy-related,", ",protocol-errors,", ",quota-issues,",
	",relaying-issues,", ",routing-errors,", ",spam-related,", ",virus-related,",
}

// fold lowercases, folds diacritics and quotes, and collapses white space and
// control characters. It works on runes so that Cyrillic, Greek and other
// scripts are lowercased too; invalid UTF-8 bytes are dropped.
func fold(text string) string {
	var b strings.Builder
	b.Grow(len(text))
	space := true // drop leading space
	lineStart := false
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '\n' || c == '\r':
				if !space {
					b.WriteByte(' ')
					space = true
				}
				lineStart = true
				continue
			case c <= ' ' || c == 0x7f:
				if !space {
					b.WriteByte(' ')
					space = true
				}
				continue
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c == '`':
				c = '\''
			}
			if lineStart {
				lineStart = false
				// A continuation line of a multi-line reply starts with
				// "550-5.7.1 " or "550 5.7.1 "; keep only the first line's prefix
				// so that phrases wrapped across lines match.
				if b.Len() > 0 {
					if n := replyPrefixLen(text[i-1:]); n > 0 {
						i += n - 1
						continue
					}
				}
			}
			b.WriteByte(c)
			space = false
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		if r == utf8.RuneError && size == 1 {
			continue
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			if !space {
				b.WriteByte(' ')
				space = true
			}
			continue
		}
		lineStart = false
		// Lower-cased first: a capital the table does not name may
		// lower to a letter it does ('ẞ' to 'ß', the Ångström sign to
		// 'å'), and the result must not fold again.
		r = unicode.ToLower(r)
		if rep, ok := foldRune(r); ok {
			b.WriteString(rep)
			space = false
			continue
		}
		b.WriteRune(r)
		space = false
	}
	s := b.String()
	return strings.TrimRight(s, " ")
}

// replyPrefixLen returns the length of a leading "550-5.7.1 ", "550 5.7.1 ",
// "550-" or "550 " reply prefix of s (up to and including the space after it),
// or 0 when s does not start with one.
func replyPrefixLen(s string) int {
	if len(s) < 4 || !isReplyCode(s) || (s[3] != '-' && s[3] != ' ') {
		return 0
	}
	n := 4
	if st := statusAt(s, n); st > 0 {
		n += st
		if n < len(s) && s[n] == ' ' {
			n++
		}
	}
	return n
}

func isReplyCode(s string) bool {
	return len(s) >= 3 && (s[0] == '2' || s[0] == '4' || s[0] == '5') &&
		isDigit(s[1]) && isDigit(s[2])
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// foldRune maps the non-ASCII runes that matter for matching to ASCII:
// Latin letters with diacritics to their base letter and typographic quotes
// and dashes to their ASCII forms.
func foldRune(r rune) (string, bool) {
	switch r {
	case '’', '‘', '´', '′', 'ʼ':
		return "'", true
	case '“', '”', '«', '»', '„':
		return `"`, true
	case '–', '—', '‐', '‑':
		return "-", true
	case 'ß':
		return "ss", true
	case 'æ', 'Æ':
		return "ae", true
	case 'œ', 'Œ':
		return "oe", true
	case 'ё', 'Ё':
		return "е", true
	}
	if r < 0xC0 || r > 0x17F {
		return "", false
	}
	if b, ok := latinFold[unicode.ToLower(r)]; ok {
		return b, true
	}
	return "", false
}

var latinFold = func() map[rune]string {
	m := map[rune]string{}
	groups := map[string]string{
		"a": "àáâãäåāăą",
		"c": "çćĉċč",
		"d": "ďđ",
		"e": "èéêëēĕėęě",
		"g": "ĝğġģ",
		"h": "ĥħ",
		"i": "ìíîïĩīĭįı",
		"j": "ĵ",
		"k": "ķ",
		"l": "ĺļľŀł",
		"n": "ñńņňŉ",
		"o": "òóôõöøōŏő",
		"r": "ŕŗř",
		"s": "śŝşš",
		"t": "ţťŧ",
		"u": "ùúûüũūŭůűų",
		"w": "ŵ",
		"y": "ýÿŷ",
		"z": "źżž",
	}
	for base, letters := range groups {
		for _, r := range letters {
			m[r] = base
		}
	}
	return m
}()

// stripHosts removes the relaying host's name from the wrappers that MTAs put
// around a reply: Postfix "host mx.example.com[192.0.2.1] said:", Exim
// "host mx.example.com [192.0.2.1]:", SendPulse "MX: mx.example.com RESP:",
// Exchange "Server at mx.example.com returned". A host name elsewhere ("host
// cx.example.org not found", "blocked using dnsbl.sorbs.net") is kept.
func stripHosts(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for i := 0; i < len(s); {
		var kw int
		switch {
		case strings.HasPrefix(s[i:], "host "):
			kw = len("host ")
		case strings.HasPrefix(s[i:], "mx: "):
			kw = len("mx: ")
		case strings.HasPrefix(s[i:], "server at "):
			kw = len("server at ")
		default:
			i++
			continue
		}
		if i > 0 && isWordByte(s[i-1]) {
			i++
			continue
		}
		start := i + kw
		end := start
		for end < len(s) && s[end] != ' ' {
			end++
		}
		name := s[start:end]
		rest := s[end:]
		if !strings.Contains(name, ".") || strings.HasPrefix(name, "[") {
			i = start
			continue
		}
		// "[ip]" glued to the name or following it.
		if strings.HasPrefix(rest, " [") || strings.HasPrefix(rest, " (") {
			if j := strings.IndexAny(rest[2:], "])"); j >= 0 {
				after := rest[2+j+1:]
				if strings.HasPrefix(after, ":") || strings.HasPrefix(after, " said") ||
					strings.HasPrefix(after, " returned") || strings.HasPrefix(after, " smtp error") ||
					strings.HasPrefix(after, " refused") || strings.HasPrefix(after, " delay") {
					rest = after
					end = len(s) - len(rest)
				}
			}
		}
		wrapper := strings.ContainsAny(name, "[]") ||
			strings.HasPrefix(rest, " said") || strings.HasPrefix(rest, ":") ||
			strings.HasPrefix(rest, " resp:") || strings.HasPrefix(rest, " returned") ||
			strings.HasPrefix(rest, " smtp error") || strings.HasPrefix(rest, " refused")
		if !wrapper {
			i = start
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString("x")
		last = end
		i = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// stripContinuations handles a multi-line reply that arrives already joined
// on one line ("550-5.7.1 foo 550-5.7.1 bar 550 5.7.1 baz"): the repeated
// prefixes after the first are removed so that wrapped phrases match.
func stripContinuations(s string) string {
	first := -1
	for i := 0; i+4 <= len(s); i++ {
		if s[i+3] == '-' && isReplyCode(s[i:]) && (i == 0 || !isWordByte(s[i-1]) && s[i-1] != '.') {
			first = i
			break
		}
	}
	if first < 0 {
		return s
	}
	n := replyPrefixLen(s[first:])
	prefix := strings.TrimRight(s[first:first+n], " ")
	code := prefix[:3]
	status := ""
	if len(prefix) > 4 {
		status = prefix[4:]
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:first+n])
	rest := s[first+n:]
	for len(rest) > 0 {
		j := strings.Index(rest, " "+code)
		if j < 0 {
			break
		}
		k := j + 1 + len(code)
		if k < len(rest) && (rest[k] == '-' || rest[k] == ' ') {
			m := k + 1
			if status != "" && strings.HasPrefix(rest[m:], status) {
				m += len(status)
				if m < len(rest) && rest[m] == ' ' {
					m++
				}
			} else if rest[k] == ' ' {
				// "550 " alone in running text is not necessarily a prefix.
				b.WriteString(rest[:k])
				rest = rest[k:]
				continue
			}
			b.WriteString(rest[:j+1])
			rest = rest[m:]
			continue
		}
		b.WriteString(rest[:k])
		rest = rest[k:]
	}
	b.WriteString(rest)
	return b.String()
}

// collapse turns runs of spaces into one and trims the ends; the earlier
// steps may leave doubled spaces where they removed text.
func collapse(s string) string {
	if !strings.Contains(s, "  ") && !strings.HasPrefix(s, " ") && !strings.HasSuffix(s, " ") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// statusAt returns the length of an enhanced status code starting at s[i]
// ("5.1.1", "4.7.650"), or 0. The class is 2, 4 or 5, the subject one digit
// 0–7, the detail one to three digits; a status that continues as a longer
// dotted number ("5.7.1.100", an IP address) is not a status.
func statusAt(s string, i int) int {
	if i+5 > len(s) {
		return 0
	}
	c := s[i]
	if c != '2' && c != '4' && c != '5' {
		return 0
	}
	if s[i+1] != '.' || s[i+2] < '0' || s[i+2] > '7' || s[i+3] != '.' {
		return 0
	}
	j := i + 4
	for j < len(s) && j < i+8 && isDigit(s[j]) {
		j++
	}
	d := j - (i + 4)
	if d == 0 || d > 3 {
		return 0
	}
	if j < len(s) && isDigit(s[j]) {
		return 0
	}
	if j+1 < len(s) && s[j] == '.' && isDigit(s[j+1]) {
		return 0
	}
	return j - i
}

// ExtractStatus returns the first enhanced status code in text (BOUNCES.md
// §3 step 2), or "". A status must not be glued to a word or a longer number:
// "5.7.1.100" and "192.5.1.1" are addresses, Yahoo's "[#4.16.1]" and
// "(554.30)" and ImprovMX's "#id-5.9.2" are vendor codes; "#5.1.1" and
// "(#5.1.1)" are accepted.
func ExtractStatus(text string) string {
	for i := 0; i+5 <= len(text); i++ {
		c := text[i]
		if c != '2' && c != '4' && c != '5' {
			continue
		}
		if i > 0 {
			p := text[i-1]
			if isDigit(p) || p == '.' || p >= 'a' && p <= 'z' || p >= 'A' && p <= 'Z' || p == '_' {
				continue
			}
			if p == '-' && i >= 3 && strings.EqualFold(text[i-3:i-1], "id") {
				continue
			}
		}
		if n := statusAt(text, i); n > 0 {
			return text[i : i+n]
		}
	}
	return ""
}

// ExtractCode returns the first SMTP reply code in text (BOUNCES.md §3 step
// 2): three digits starting with 2, 4 or 5, followed by a space or "-" and
// not part of a longer number, word or dotted address; 0 when there is none.
func ExtractCode(text string) int {
	for i := 0; i+4 <= len(text); i++ {
		if !isReplyCode(text[i:]) {
			continue
		}
		if text[i+3] != ' ' && text[i+3] != '-' {
			continue
		}
		if i > 0 {
			p := text[i-1]
			if isDigit(p) || p == '.' || p >= 'a' && p <= 'z' || p >= 'A' && p <= 'Z' ||
				p == '/' || p == '=' || p == '_' || p == '+' || p == '@' || p == '%' || p == '-' || p >= 0x80 {
				continue
			}
		}
		// "550-" followed by a letter is a name ("550-bl23.html"), not a reply.
		if text[i+3] == '-' && i+4 < len(text) && !isDigit(text[i+4]) && text[i+4] != ' ' {
			continue
		}
		return int(text[i]-'0')*100 + int(text[i+1]-'0')*10 + int(text[i+2]-'0')
	}
	return 0
}

package bounce

import (
	"slices"
	"strings"
)

// Input is one bounce as a webhook carries it.
type Input struct {
	Code   int    // SMTP reply code; 0 when absent
	Status string // enhanced status ("subcode") such as "5.1.1"; "" when absent
	Text   string // the server's response text, possibly wrapped, multi-line, non-English
	Label  string // the provider's own label, e.g. "soft_bounces", "hard_bounces", "undelivered"; weak evidence only
}

// Class says whether an address may be retried.
type Class string

// The three classes of BOUNCES.md §2.
const (
	// Hard: the address itself will never accept mail; stop sending to it.
	Hard Class = "hard"
	// Soft: retry, possibly after fixing our side (IP, content, authentication).
	Soft Class = "soft"
	// Undetermined: a permanent failure whose cause is unknown.
	Undetermined Class = "undetermined"
)

// Result is the classification of one Input.
type Result struct {
	Class  Class
	Reason string // one of Reasons()
	Status string // the enhanced status used ("" if none), from the field or extracted from the text
	Code   int    // the reply code used (field or extracted from text), 0 if none
	Rule   string // which rule decided, e.g. `text "user unknown"`, `status 5.1.1`, `provider i.ua err/4`
}

// reasons lists the 27 reasons in the order of BOUNCES.md §1.
var reasons = []string{
	"user_unknown", "host_unknown", "has_moved", "mailbox_disabled", "suppressed", "relay_denied",
	"mailbox_full", "message_too_large", "rate_limited", "greylisted", "blocked", "bad_reputation",
	"auth_failure", "require_ptr", "sender_rejected", "spam_content", "virus_detected", "content_error",
	"policy_rejected", "recipient_filtered", "tls_required", "security_error", "protocol_error",
	"system_error", "network_error", "expired", "unknown",
}

// Reasons returns all 27 reasons in the order of BOUNCES.md §1. The slice is
// a copy; callers may modify it.
func Reasons() []string { return slices.Clone(reasons) }

// compiled is everything derived from the rule tables at init; it is
// read-only afterwards, which is what makes Classify safe for concurrent use.
type compiled struct {
	ac           *automaton
	patterns     []pattern // text rule patterns in decision order
	labels       []string  // Result.Rule for each pattern
	atomPatterns [][]int32 // atom -> patterns that use it
	always       []int32   // cond-only patterns, candidates for every input
	unless       [][]pattern
	provAtoms    []int32 // atom of providerRules[i]
}

const maxAtoms = 64 * 40

var c = compile()

func compile() *compiled {
	t := &atomTable{index: map[atom]int32{}}
	c := &compiled{}
	for i, p := range providerRules {
		c.provAtoms = append(c.provAtoms, t.add(p.marker))
		_ = i
	}
	for ri, r := range textRules {
		if !slices.Contains(reasons, r.reason) {
			panic("bounce: unknown reason " + r.reason)
		}
		var un []pattern
		for _, u := range r.unless {
			un = append(un, t.pattern(u, int32(ri)))
		}
		c.unless = append(c.unless, un)
		if len(r.pats) == 0 {
			c.always = append(c.always, int32(len(c.patterns)))
			c.patterns = append(c.patterns, pattern{src: r.name, rule: int32(ri)})
			c.labels = append(c.labels, r.name)
			continue
		}
		for _, src := range r.pats {
			c.patterns = append(c.patterns, t.pattern(src, int32(ri)))
			c.labels = append(c.labels, `text "`+src+`"`)
		}
	}
	for _, a := range t.atoms {
		if strings.ToLower(a.text) != a.text {
			panic("bounce: atom not lowercase: " + a.text)
		}
	}
	if len(t.atoms) > maxAtoms {
		panic("bounce: too many atoms")
	}
	c.atomPatterns = make([][]int32, len(t.atoms))
	for pi, p := range c.patterns {
		for _, a := range p.atoms {
			if !slices.Contains(c.atomPatterns[a], int32(pi)) {
				c.atomPatterns[a] = append(c.atomPatterns[a], int32(pi))
			}
		}
	}
	c.ac = buildAutomaton(t.atoms)
	return c
}

// state is the per-call working set of Classify.
type state struct {
	text    string
	stClass int // class digit of the status used, 0 if none
	subject int
	detail  int
	hits    []hit
	seen    [maxAtoms / 64]uint64
}

func (s *state) has(a int32) bool { return s.seen[a>>6]&(1<<(a&63)) != 0 }

func (s *state) matches(p *pattern) bool {
	for _, a := range p.atoms {
		if !s.has(a) {
			return false
		}
	}
	if p.ordered {
		return chain(s.hits, p.atoms, 0, 0)
	}
	return true
}

// chain reports whether atoms[k:] occur in order, each starting within
// maxGap bytes after the previous one ends.
func chain(hits []hit, atoms []int32, k int, prevEnd int32) bool {
	if k == len(atoms) {
		return true
	}
	for _, h := range hits {
		if h.atom != atoms[k] {
			continue
		}
		if k > 0 && (h.start < prevEnd || h.start-prevEnd > maxGap) {
			continue
		}
		if chain(hits, atoms, k+1, h.end) {
			return true
		}
	}
	return false
}

// parseStatus splits a status found by ExtractStatus into its numbers.
func parseStatus(st string) (class, subject, detail int) {
	if st == "" {
		return 0, 0, 0
	}
	class = int(st[0] - '0')
	subject = int(st[2] - '0')
	for i := 4; i < len(st); i++ {
		detail = detail*10 + int(st[i]-'0')
	}
	return class, subject, detail
}

// weakStatus reports statuses that MTAs synthesise when the reply had none
// (x.0.0, x.1.0): they carry no cause (§3 step 2).
func weakStatus(st string) bool {
	_, subject, detail := parseStatus(st)
	return detail == 0 && (subject == 0 || subject == 1)
}

// Classify decides the class and reason of one bounce following BOUNCES.md
// §3: normalise, extract codes, provider tables, text rules by tier, status
// table, reply code table, then the class rules of §2. It does no I/O,
// keeps no state between calls and is safe for concurrent use.
func Classify(in Input) Result {
	norm := Normalize(in.Text)
	var s state
	s.text = norm

	// Status: the field, unless it is a synthesised one and the text names a
	// real one.
	status := ExtractStatus(in.Status)
	if status == "" || weakStatus(status) {
		if ts := ExtractStatus(norm); ts != "" && (status == "" || !weakStatus(ts)) {
			status = ts
		}
	}
	s.stClass, s.subject, s.detail = parseStatus(status)

	code := 0
	if in.Code >= 200 && in.Code <= 599 {
		code = in.Code
	} else {
		code = ExtractCode(norm)
	}

	// The class digit (§2): the reply code field, else the status field,
	// else what the text says.
	digit := 0
	switch {
	case in.Code >= 400 && in.Code <= 599:
		digit = in.Code / 100
	case fieldDigit(in.Status) != 0:
		digit = fieldDigit(in.Status)
	case code >= 400:
		digit = code / 100
	case s.stClass == 4 || s.stClass == 5:
		digit = s.stClass
	}

	var buf [32]hit
	s.hits = c.ac.scan(norm, buf[:0])
	for _, h := range s.hits {
		s.seen[h.atom>>6] |= 1 << (h.atom & 63)
	}

	res := Result{Status: status, Code: code}
	res.Reason, res.Rule = decide(&s)
	if res.Reason == "" {
		switch r := statusReason(s.stClass, s.subject, s.detail, isMicrosoft(norm)); {
		case status != "" && r != "unknown":
			res.Reason, res.Rule = r, "status "+status
		case codeReason(code) != "unknown":
			res.Reason, res.Rule = codeReason(code), "code "+itoa(code)
		default:
			res.Reason, res.Rule = "unknown", "no rule matched"
		}
	}
	res.Class, res.Rule = classOf(res.Reason, digit, norm, in.Label, code != 0 || status != "", res.Rule)
	return res
}

func fieldDigit(st string) int {
	if st := ExtractStatus(st); st != "" && (st[0] == '4' || st[0] == '5') {
		return int(st[0] - '0')
	}
	return 0
}

func isMicrosoft(norm string) bool {
	return strings.Contains(norm, "outlook.com") || strings.Contains(norm, "resolver.")
}

// decide runs the provider tables and the text rules; it returns "" when
// none applies.
func decide(s *state) (reason, rule string) {
	for i, a := range c.provAtoms {
		if !s.has(a) {
			continue
		}
		for _, h := range s.hits {
			if h.atom != a {
				continue
			}
			p := &providerRules[i]
			if r, label := p.decide(s.text[h.end:]); r != "" {
				return r, "provider " + p.name + " " + label
			}
		}
	}

	// Candidates: the patterns that use an atom present in the text, plus
	// the cond-only rules, tried in decision order.
	var cbuf [64]int32
	cand := append(cbuf[:0], c.always...)
	var done [maxAtoms / 64]uint64
	for _, h := range s.hits {
		if done[h.atom>>6]&(1<<(h.atom&63)) != 0 {
			continue
		}
		done[h.atom>>6] |= 1 << (h.atom & 63)
		cand = append(cand, c.atomPatterns[h.atom]...)
	}
	slices.Sort(cand)
	last := int32(-1)
	for _, pi := range cand {
		if pi == last {
			continue
		}
		last = pi
		p := &c.patterns[pi]
		if !s.matches(p) {
			continue
		}
		r := &textRules[p.rule]
		if !r.cond.holds(s) {
			continue
		}
		vetoed := false
		for k := range c.unless[p.rule] {
			if s.matches(&c.unless[p.rule][k]) {
				vetoed = true
				break
			}
		}
		if vetoed {
			continue
		}
		return r.reason, c.labels[pi]
	}
	if wholeTextBlocked(s) {
		return "blocked", `text is "blocked"`
	}
	return "", ""
}

// wholeTextBlocked is the §5 rule for a reply that says nothing but
// "blocked" after its code and status.
func wholeTextBlocked(s *state) bool {
	t := strings.TrimPrefix(s.text, "smtp;")
	t = strings.TrimSpace(t)
	if len(t) >= 4 && isReplyCode(t) && (t[3] == ' ' || t[3] == '-') {
		t = t[4:]
	}
	if n := statusAt(t, 0); n > 0 {
		t = strings.TrimSpace(t[n:])
	}
	t = strings.TrimRight(t, ".! ")
	return t == "blocked"
}

// classOf applies BOUNCES.md §2. The provider's label is weak evidence and
// is used only where the reason and codes leave the class open:
//   - unknown, not 4xx: a "soft" label makes it soft; a "hard" label makes it
//     hard only when there is no reply code and no status at all.
//   - mailbox_disabled/relay_denied with no class digit at all: a "soft"
//     label makes it soft.
//
// The asymmetry is deliberate: a wrong hard suppresses a good address for
// ever, a wrong soft costs one more attempt.
func classOf(reason string, digit int, norm, label string, haveCodes bool, rule string) (Class, string) {
	lbl := strings.ToLower(label)
	labelSoft := strings.Contains(lbl, "soft")
	labelHard := strings.Contains(lbl, "hard")
	switch reason {
	case "user_unknown", "host_unknown", "has_moved", "suppressed":
		return Hard, rule
	case "mailbox_disabled", "relay_denied":
		if digit == 4 || temporaryText(norm) {
			return Soft, rule
		}
		if digit == 0 && labelSoft {
			return Soft, rule + " + label " + label
		}
		return Hard, rule
	case "unknown":
		if digit == 4 {
			return Soft, rule
		}
		if labelSoft {
			return Soft, rule + " + label " + label
		}
		if labelHard && !haveCodes {
			return Hard, rule + " + label " + label
		}
		return Undetermined, rule
	}
	return Soft, rule
}

// temporaryText reports the phrases of §2 that make a disabled mailbox or a
// relay refusal temporary.
func temporaryText(norm string) bool {
	for _, p := range [...]string{"temporar", "try again later", "please try again", "try later", "retry later"} {
		if strings.Contains(norm, p) {
			return true
		}
	}
	return false
}

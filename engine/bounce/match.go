package bounce

import (
	"fmt"
	"strings"
)

// This file holds the multi-pattern matcher. Every phrase of every rule is an
// "atom"; all atoms are compiled into one Aho-Corasick automaton so that a
// reply is scanned once, whatever the number of phrases, instead of running
// hundreds of strings.Contains or regexps per input.
//
// Pattern syntax (on normalised, lowercased text):
//
//	`\b` at the start or end of an atom  the atom must start or end on a word boundary
//	`\d` at the end of an atom           a digit must follow the atom
//	`a...b`                              a occurs, then b starts within maxGap bytes after a ends
//	`a&&b`                               a and b both occur anywhere (any order)

// maxGap bounds the distance between the parts of an ordered pattern
// ("client host … blocked"), so that two phrases from unrelated sentences of
// a long DSN do not combine.
const maxGap = 60

type atom struct {
	text       string
	wordStart  bool
	wordEnd    bool
	digitAfter bool
}

// pattern is one alternative of a rule: a conjunction of atoms.
type pattern struct {
	src     string // as written in the rule table, used in Result.Rule
	atoms   []int32
	ordered bool
	rule    int32
}

// hit is one verified occurrence of an atom in the text.
type hit struct {
	atom       int32
	start, end int32
}

// automaton is a dense Aho-Corasick DFA over byte classes. Bytes that occur
// in no atom share class 0, which keeps the transition table small.
type automaton struct {
	atoms   []atom
	class   [256]uint8
	nclass  int
	delta   []uint16 // state*nclass + class -> next state
	outOff  []uint32 // outputs of state s are outList[outOff[s]:outOff[s+1]]
	outList []int32
}

func parseAtom(s string) atom {
	var a atom
	if strings.HasPrefix(s, `\b`) {
		a.wordStart = true
		s = s[2:]
	}
	if strings.HasSuffix(s, `\b`) {
		a.wordEnd = true
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, `\d`) {
		a.digitAfter = true
		s = s[:len(s)-2]
	}
	a.text = s
	return a
}

// atomTable interns atoms while the rule tables are compiled.
type atomTable struct {
	atoms []atom
	index map[atom]int32
}

func (t *atomTable) add(spec string) int32 {
	a := parseAtom(strings.TrimSpace(spec))
	if a.text == "" {
		panic(fmt.Sprintf("bounce: empty atom in %q", spec))
	}
	if id, ok := t.index[a]; ok {
		return id
	}
	id := int32(len(t.atoms))
	t.atoms = append(t.atoms, a)
	t.index[a] = id
	return id
}

func (t *atomTable) pattern(src string, rule int32) pattern {
	p := pattern{src: src, rule: rule}
	var parts []string
	switch {
	case strings.Contains(src, "..."):
		p.ordered = true
		parts = strings.Split(src, "...")
	case strings.Contains(src, "&&"):
		parts = strings.Split(src, "&&")
	default:
		parts = []string{src}
	}
	for _, part := range parts {
		p.atoms = append(p.atoms, t.add(part))
	}
	return p
}

func buildAutomaton(atoms []atom) *automaton {
	m := &automaton{atoms: atoms}
	// Byte classes: one per byte used by some atom, 0 for the rest.
	n := 1
	for _, a := range atoms {
		for i := 0; i < len(a.text); i++ {
			if m.class[a.text[i]] == 0 {
				m.class[a.text[i]] = uint8(n)
				n++
			}
		}
	}
	if n > 255 {
		panic("bounce: too many byte classes")
	}
	m.nclass = n

	// Trie.
	goto_ := []int32{}
	newState := func() int32 {
		for range n {
			goto_ = append(goto_, -1)
		}
		return int32(len(goto_)/n - 1)
	}
	newState()
	own := [][]int32{nil}
	for id, a := range atoms {
		s := int32(0)
		for i := 0; i < len(a.text); i++ {
			c := int(m.class[a.text[i]])
			if goto_[int(s)*n+c] < 0 {
				ns := newState()
				own = append(own, nil)
				goto_[int(s)*n+c] = ns
			}
			s = goto_[int(s)*n+c]
		}
		own[s] = append(own[s], int32(id))
	}
	states := len(own)
	if states >= 1<<16 {
		panic("bounce: automaton too large")
	}

	// Breadth-first: failure links, full transition table, merged outputs.
	fail := make([]int32, states)
	out := make([][]int32, states)
	m.delta = make([]uint16, states*n)
	queue := make([]int32, 0, states)
	out[0] = own[0]
	for c := range n {
		if t := goto_[c]; t >= 0 {
			fail[t] = 0
			m.delta[c] = uint16(t)
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		out[s] = append(append([]int32(nil), own[s]...), out[fail[s]]...)
		for c := range n {
			t := goto_[int(s)*n+c]
			if t < 0 {
				m.delta[int(s)*n+c] = m.delta[int(fail[s])*n+c]
				continue
			}
			fail[t] = int32(m.delta[int(fail[s])*n+c])
			m.delta[int(s)*n+c] = uint16(t)
			queue = append(queue, t)
		}
	}
	m.outOff = make([]uint32, states+1)
	for s := range states {
		m.outOff[s] = uint32(len(m.outList))
		m.outList = append(m.outList, out[s]...)
	}
	m.outOff[states] = uint32(len(m.outList))
	return m
}

func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b >= 0x80
}

// scan appends every occurrence of every atom in s that satisfies the atom's
// boundary conditions.
func (m *automaton) scan(s string, hits []hit) []hit {
	state := 0
	n := m.nclass
	for i := 0; i < len(s); i++ {
		state = int(m.delta[state*n+int(m.class[s[i]])])
		lo, hi := m.outOff[state], m.outOff[state+1]
		for _, id := range m.outList[lo:hi] {
			a := &m.atoms[id]
			end := i + 1
			start := end - len(a.text)
			if a.wordStart && start > 0 && isWordByte(s[start-1]) {
				continue
			}
			if a.wordEnd && end < len(s) && isWordByte(s[end]) {
				continue
			}
			if a.digitAfter && (end >= len(s) || s[end] < '0' || s[end] > '9') {
				continue
			}
			hits = append(hits, hit{atom: id, start: int32(start), end: int32(end)})
		}
	}
	return hits
}

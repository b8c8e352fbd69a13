package bounce_test

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
)

// corpusCase is one line of testdata/replies.jsonl, a copy of the shared
// corpus of real replies (../shared/testdata/bounces/replies.jsonl).
type corpusCase struct {
	Line    int
	Code    *int    `json:"code"`
	Subcode *string `json:"subcode"`
	Text    string  `json:"text"`
	Class   string  `json:"class"`
	Reason  string  `json:"reason"`
	Source  string  `json:"source"`
}

func (c corpusCase) input() bounce.Input {
	in := bounce.Input{Text: c.Text}
	if c.Code != nil {
		in.Code = *c.Code
	}
	if c.Subcode != nil {
		in.Status = *c.Subcode
	}
	return in
}

func loadCorpus(tb testing.TB) []corpusCase {
	tb.Helper()
	f, err := os.Open("testdata/replies.jsonl")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var cases []corpusCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var c corpusCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			tb.Fatalf("testdata/replies.jsonl line %d: %v", n, err)
		}
		c.Line = n
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return cases
}

// TestCorpus runs the shared corpus as one table. Some labels are debatable
// (see the package's report), so it asserts agreement rates rather than
// every line; every mismatch is logged with its line number.
func TestCorpus(t *testing.T) {
	cases := loadCorpus(t)
	var reasonOK, classOK int
	for _, c := range cases {
		got := bounce.Classify(c.input())
		if got.Reason == c.Reason {
			reasonOK++
		}
		if string(got.Class) == c.Class {
			classOK++
		}
		if got.Reason != c.Reason || string(got.Class) != c.Class {
			t.Logf("line %d: got %s/%s (%s), want %s/%s\n\ttext: %.200s",
				c.Line, got.Class, got.Reason, got.Rule, c.Class, c.Reason, c.Text)
		}
	}
	n := float64(len(cases))
	reasonPct := 100 * float64(reasonOK) / n
	classPct := 100 * float64(classOK) / n
	t.Logf("corpus: %d replies, reason agreement %.2f%% (%d), class agreement %.2f%% (%d)",
		len(cases), reasonPct, reasonOK, classPct, classOK)
	if reasonPct < 97 {
		t.Errorf("reason agreement %.2f%% < 97%%", reasonPct)
	}
	if classPct < 99 {
		t.Errorf("class agreement %.2f%% < 99%%", classPct)
	}
}

func TestReasons(t *testing.T) {
	r := bounce.Reasons()
	if len(r) != 27 {
		t.Fatalf("got %d reasons, want 27", len(r))
	}
	if r[0] != "user_unknown" || r[26] != "unknown" {
		t.Fatalf("order: got %v", r)
	}
	r[0] = "changed"
	if bounce.Reasons()[0] != "user_unknown" {
		t.Fatal("Reasons returned shared storage")
	}
	sorted := slices.Clone(r)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != 27 {
		t.Fatal("duplicate reasons")
	}
}

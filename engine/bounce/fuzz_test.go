package bounce_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
)

// Fuzz targets for the parsers of the package. Seeds are the corpus replies;
// run one with, e.g.:
//
//	go test ./engine/bounce/ -run='^$' -fuzz=FuzzClassify -fuzztime=20s

// maxFuzzLen skips inputs far larger than any real reply.
const maxFuzzLen = 1 << 14

var statusRE = regexp.MustCompile(`^[245]\.[0-7]\.[0-9]{1,3}$`)

func addCorpusSeeds(f *testing.F) {
	for _, c := range loadCorpus(f) {
		in := c.input()
		f.Add(in.Code, in.Status, in.Text, "")
	}
	f.Add(421, "5.7.32", "421-4.7.32 multi\n421 4.7.32 line", "soft_bounces")
	f.Add(0, "", "5.7.1.100 [#4.16.1] (554.30) #id-5.9.2", "hard_bounces")
}

func FuzzNormalize(f *testing.F) {
	for _, c := range loadCorpus(f) {
		f.Add(c.Text)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxFuzzLen {
			t.Skip()
		}
		n := bounce.Normalize(s)
		if n2 := bounce.Normalize(n); n2 != n {
			t.Fatalf("not idempotent:\n%q\n%q", n, n2)
		}
		if strings.Contains(n, "  ") || strings.HasPrefix(n, " ") || strings.HasSuffix(n, " ") {
			t.Fatalf("white space not collapsed: %q", n)
		}
		for _, r := range n {
			if r >= 'A' && r <= 'Z' {
				t.Fatalf("upper case left: %q", n)
			}
		}
	})
}

func FuzzExtractStatus(f *testing.F) {
	for _, c := range loadCorpus(f) {
		f.Add(c.Text)
	}
	f.Add("5.7.1.100 #5.1.1")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxFuzzLen {
			t.Skip()
		}
		st := bounce.ExtractStatus(s)
		if st != "" && !statusRE.MatchString(st) {
			t.Fatalf("ExtractStatus(%q) = %q, not a status", s, st)
		}
		if st != "" && !strings.Contains(s, st) {
			t.Fatalf("ExtractStatus(%q) = %q, not in the input", s, st)
		}
	})
}

func FuzzExtractCode(f *testing.F) {
	for _, c := range loadCorpus(f) {
		f.Add(c.Text)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxFuzzLen {
			t.Skip()
		}
		code := bounce.ExtractCode(s)
		if code == 0 {
			return
		}
		if code < 200 || code > 599 || code/100 == 3 {
			t.Fatalf("ExtractCode(%q) = %d", s, code)
		}
	})
}

func FuzzClassify(f *testing.F) {
	addCorpusSeeds(f)
	reasons := bounce.Reasons()
	f.Fuzz(func(t *testing.T, code int, status, text, label string) {
		if len(text)+len(status)+len(label) > maxFuzzLen {
			t.Skip()
		}
		in := bounce.Input{Code: code, Status: status, Text: text, Label: label}
		got := bounce.Classify(in)
		switch got.Class {
		case bounce.Hard, bounce.Soft, bounce.Undetermined:
		default:
			t.Fatalf("class %q", got.Class)
		}
		if !slices.Contains(reasons, got.Reason) {
			t.Fatalf("reason %q not in Reasons()", got.Reason)
		}
		if got.Status != "" && !statusRE.MatchString(got.Status) {
			t.Fatalf("status %q", got.Status)
		}
		if got.Rule == "" {
			t.Fatal("empty rule")
		}
		if again := bounce.Classify(in); again != got {
			t.Fatalf("not deterministic: %+v then %+v", got, again)
		}
	})
}

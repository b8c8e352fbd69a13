package bounce_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
)

func TestClassifyLines(t *testing.T) {
	in := strings.Join([]string{
		`{"code": 550, "subcode": "5.1.1", "text": "550 5.1.1 user unknown"}`,
		`{"code": "452", "subcode": "4.2.2", "text": "mailbox full"}`,
		`{"text": "Relay access denied"}`,
		`{"code": null, "subcode": null, "text": null}`,
		`not json`,
		``,
		`{"code": "550 5.7.1", "text": "554 Transaction failed", "event": "soft_bounces"}`,
		`{"code": true}`,
		`{"code": 550.0, "event": "hard_bounces"}`,
		`{"subcode": "5.2.2"}`,
	}, "\n") // no final newline: the last line must still be read
	var out strings.Builder
	if err := bounce.ClassifyLines(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"class": "hard", "reason": "user_unknown", "status": "5.1.1", "code": 550.0},
		{"class": "soft", "reason": "mailbox_full", "status": "4.2.2", "code": 452.0},
		{"class": "hard", "reason": "relay_denied", "status": ""},
		{"class": "undetermined", "reason": "unknown", "status": ""},
		{"error": "line 5: "},
		{"class": "soft", "reason": "unknown", "code": 550.0},
		{"error": "line 8: "},
		{"class": "undetermined", "reason": "unknown", "code": 550.0},
		{"class": "soft", "reason": "mailbox_full", "status": "5.2.2"},
	}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	i := 0
	for ; sc.Scan(); i++ {
		if i >= len(want) {
			t.Fatalf("extra output line %q", sc.Text())
		}
		var got map[string]any
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("output line %d is not JSON: %q", i+1, sc.Text())
		}
		for k, v := range want[i] {
			if k == "error" {
				msg, _ := got["error"].(string)
				if !strings.HasPrefix(msg, v.(string)) {
					t.Errorf("output %d: error %q, want prefix %q", i+1, msg, v)
				}
				continue
			}
			if got[k] != v {
				t.Errorf("output %d: %s = %v, want %v (line %s)", i+1, k, got[k], v, sc.Text())
			}
		}
		if _, isErr := want[i]["error"]; !isErr {
			for _, k := range []string{"class", "reason", "status", "code", "rule"} {
				if _, ok := got[k]; !ok {
					t.Errorf("output %d: missing %q", i+1, k)
				}
			}
		}
	}
	if i != len(want) {
		t.Fatalf("got %d output lines, want %d:\n%s", i, len(want), out.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestClassifyLinesIOErrors(t *testing.T) {
	if err := bounce.ClassifyLines(strings.NewReader(`{"text":"x"}`+"\n"), failWriter{}); err == nil {
		t.Error("write error not returned")
	}
	if err := bounce.ClassifyLines(failReader{}, &strings.Builder{}); err == nil {
		t.Error("read error not returned")
	}
}

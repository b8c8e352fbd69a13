package main_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassifyCommand(t *testing.T) {
	in := strings.Join([]string{
		`{"code": 550, "subcode": "5.1.1", "text": "550 5.1.1 <a@b.c>: Recipient address rejected: User unknown"}`,
		`{"code": "552", "text": "Mailbox over quota. See http://mail.i.ua/err/4/", "event": "soft_bounces"}`,
		`{"text": "421 4.7.0 Try again later, closing connection."}`,
		`not json`,
		`{}`,
	}, "\n")
	cmd := exec.Command(binary, "classify")
	cmd.Stdin = strings.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), errb.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 5, "one output line per input line")
	var got []map[string]any
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		got = append(got, m)
	}
	require.Equal(t, "hard", got[0]["class"])
	require.Equal(t, "user_unknown", got[0]["reason"])
	require.Equal(t, "5.1.1", got[0]["status"])
	require.Equal(t, "soft", got[1]["class"])
	require.Equal(t, "mailbox_full", got[1]["reason"])
	require.Equal(t, "soft", got[2]["class"])
	require.Equal(t, "4.7.0", got[2]["status"], "status extracted from the text")
	require.Contains(t, got[3]["error"], "line 4")
	require.Contains(t, got[4], "class")
}

func TestVersionCommand(t *testing.T) {
	out, err := exec.Command(binary, "version").CombinedOutput()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(out), "mailfunnel "), "%s", out)
}

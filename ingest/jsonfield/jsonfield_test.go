package jsonfield_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"

	"github.com/mailfunnel/mailfunnel/ingest"
	"github.com/mailfunnel/mailfunnel/ingest/jsonfield"
)

func TestScalarAndTrimmed(t *testing.T) {
	cases := []struct {
		name, in, scalar, trimmed string
		err                       bool
	}{
		{"string", `" a b "`, " a b ", "a b", false},
		{"number", `550`, "550", "550", false},
		{"float", `1490954061.5`, "1490954061.5", "1490954061.5", false},
		{"null", `null`, "", "", false},
		{"object", `{}`, "", "", true},
		{"array", `[1]`, "", "", true},
		{"bool", `true`, "", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := fastjson.Parse(tc.in)
			require.NoError(t, err)
			got, err := jsonfield.Scalar(v, nil)
			if tc.err {
				require.ErrorIs(t, err, jsonfield.ErrNotScalar)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.scalar, string(got))
			got, err = jsonfield.Trimmed(v, nil)
			require.NoError(t, err)
			require.Equal(t, tc.trimmed, string(got))
		})
	}
}

func TestSyntaxErrorNamesOffset(t *testing.T) {
	body := []byte(`[{"event": }]`)
	_, perr := fastjson.ParseBytes(body)
	err := jsonfield.SyntaxError(body, perr)
	require.ErrorIs(t, err, ingest.ErrSyntax)
	require.Contains(t, err.Error(), "offset")
}

func FuzzValidNumber(f *testing.F) {
	for _, s := range []string{"0", "-1", "1.5e3", "01", "1.", ".5", "1e", "-", "", "12345678901234567890"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var n json.Number
		// encoding/json also accepts surrounding white space; a number
		// field's literal never has any.
		want := json.Unmarshal([]byte(s), &n) == nil && s != "" && strings.TrimSpace(s) == s &&
			(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))
		if got := jsonfield.ValidNumber([]byte(s)); got != want {
			t.Fatalf("ValidNumber(%q) = %v, encoding/json says %v", s, got, want)
		}
	})
}

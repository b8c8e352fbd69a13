package secret_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/internal/secret"
)

func TestEqual(t *testing.T) {
	require.True(t, secret.Equal("abc", "abc"))
	require.False(t, secret.Equal("abd", "abc"))
	require.False(t, secret.Equal("", ""), "an empty token never matches")
}

func TestLoadOrCreate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "ingest.token")
	tok, created, err := secret.LoadOrCreate(p)
	require.NoError(t, err)
	require.True(t, created)
	require.Len(t, tok, 64)
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	again, created, err := secret.LoadOrCreate(p)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, tok, again)
	require.NoError(t, os.WriteFile(p, []byte("\n"), 0o600))
	_, _, err = secret.LoadOrCreate(p)
	require.Error(t, err)
}

// Package secret handles mailfunnel's shared secrets (the ingest and API
// tokens): comparing a presented token in constant time, and generating and
// keeping a token in the data directory when the operator gave none.
package secret

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Equal reports whether got equals want, without leaking through timing how
// much of it matched. An empty got never matches.
func Equal(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// LoadOrCreate returns the token kept in path, creating it (32 random bytes,
// hex, mode 0600) when the file does not exist. created reports whether it
// was generated now, so the caller can log it once.
func LoadOrCreate(path string) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", false, fmt.Errorf("token file %q is empty: delete it to generate a new token", path)
		}
		return t, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read token file: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, fmt.Errorf("generate token: %w", err)
	}
	t := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", false, fmt.Errorf("create data dir: %w", err)
	}
	// Write then rename, so that a crash never leaves an empty token file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(t+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write token file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", false, fmt.Errorf("write token file: %w", err)
	}
	return t, true, nil
}

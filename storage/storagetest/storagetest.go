// Package storagetest opens real storage logs for tests: a Badger database
// in a temporary directory, closed when the test ends. mailfunnel's tests
// never mock the store.
package storagetest

import (
	"testing"

	"github.com/mailfunnel/mailfunnel/storage"
)

// New opens a log in tb.TempDir() and closes it in tb.Cleanup.
func New(tb testing.TB) *storage.Log {
	tb.Helper()
	return NewConfig(tb, storage.DefaultConfig(tb.TempDir()))
}

// NewConfig opens a log with cfg (cfg.Dir should be a temp dir).
func NewConfig(tb testing.TB, cfg storage.Config) *storage.Log {
	tb.Helper()
	l, err := storage.Open(cfg)
	if err != nil {
		tb.Fatalf("open log: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("close log: %v", err)
		}
	})
	return l
}

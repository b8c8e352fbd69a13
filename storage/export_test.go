package storage

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// SetDedupeFilterKeys sizes each dedupe filter for n keys, so that a test
// fills several; it returns the function that restores the default.
func SetDedupeFilterKeys(n int) (restore func()) {
	old := dedupeFilterKeys
	dedupeFilterKeys = n
	return func() { dedupeFilterKeys = old }
}

// SetSkipCloseRun makes Close leave the dedupe index's tail unwritten, as
// a crash would; it returns the function that restores the default.
func SetSkipCloseRun(skip bool) (restore func()) {
	old := skipCloseRun
	skipCloseRun = skip
	return func() { skipCloseRun = old }
}

// SetDedupeRunSizes sets the hashes a tail holds before it becomes a run
// and the runs kept before a merge.
func SetDedupeRunSizes(tail, runs int) (restore func()) {
	ot, or := tailKeys, maxRuns
	tailKeys, maxRuns = tail, runs
	return func() { tailKeys, maxRuns = ot, or }
}

// SetRunWriteHook makes every dedupe run write call fail(first, last)
// before it finishes; an error fails the write.
func SetRunWriteHook(fail func(first, last uint64) error) (restore func()) {
	old := runWriteHook
	runWriteHook = fail
	return func() { runWriteHook = old }
}

// FlipByte flips a bit of the byte at off in the file at path: damage a
// checksum must find.
func FlipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := []byte{0}
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0x20
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

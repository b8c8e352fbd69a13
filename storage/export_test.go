package storage

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

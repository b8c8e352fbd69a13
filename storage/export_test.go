package storage

// SetDedupeFilterKeys sizes each dedupe filter for n keys, so that a test
// fills several; it returns the function that restores the default.
func SetDedupeFilterKeys(n int) (restore func()) {
	old := dedupeFilterKeys
	dedupeFilterKeys = n
	return func() { dedupeFilterKeys = old }
}

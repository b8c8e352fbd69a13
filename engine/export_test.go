package engine

// Crash closes the state store the way a kill would leave it: without
// writing the sketches that wait for their next flush.
func Crash(e *Engine) error {
	e.closeOnce.Do(func() {
		e.closed = true
		if e.rtxn != nil {
			e.rtxn.Discard()
		}
		e.closeErr = e.db.Close()
	})
	return e.closeErr
}

// SetStagedSizeHook sets stagedSizeHook and the transaction byte budget
// for one test; the returned function restores both.
func SetStagedSizeHook(budget int, hook func(staged, estimate int)) (restore func()) {
	oldBudget, oldHook := maxDirtyBytes, stagedSizeHook
	maxDirtyBytes, stagedSizeHook = budget, hook
	return func() { maxDirtyBytes, stagedSizeHook = oldBudget, oldHook }
}

package export

// SetAfterStep lets the external tests stop a run after a step's files are
// renamed and recorded but before its checkpoint moves, as a crash would.
func SetAfterStep(x *Exporter, f func(from, to uint64) error) { x.afterStep = f }

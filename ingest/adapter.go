package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/mailfunnel/mailfunnel/event"
)

// Source identifies the endpoint a webhook arrived on: the provider's adapter
// and the source name (an account of that provider). Location is the time
// zone of timestamps that carry none; nil means UTC.
type Source struct {
	Provider string
	Name     string
	Location *time.Location
}

// Adapter turns one webhook body of a provider into canonical events.
//
// Parse is pure: no I/O, no clock (recv is the receive time to use when an
// element has no timestamp), safe for concurrent use, so that it can be
// fuzzed and benchmarked alone. It does not retain body after returning;
// the returned events own their strings. On failure it returns no events and
// an error; an element that cannot be understood is reported as an
// *ElementError naming its index (0 for a single object), and a body that is
// not JSON at all wraps ErrSyntax. Every returned event passes
// event.Validate, has Seq 0 and empty BounceClass/BounceReason.
type Adapter interface {
	// Provider is the name used in URLs and in event.Provider.
	Provider() string
	Parse(src Source, body []byte, recv time.Time) ([]event.Event, error)
}

// ErrSyntax marks a body that is not valid JSON (or not the JSON shape the
// provider sends at all: neither an array nor an object).
var ErrSyntax = errors.New("body is not valid JSON")

// ElementError reports an element of a webhook body that cannot be turned
// into an event. Index is the element's position in the array (0 for a body
// that is a single object); Field names the offending field when known.
type ElementError struct {
	Index int
	Field string
	Err   error
}

func (e *ElementError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("element %d: field %q: %v", e.Index, e.Field, e.Err)
	}
	return fmt.Sprintf("element %d: %v", e.Index, e.Err)
}

func (e *ElementError) Unwrap() error { return e.Err }

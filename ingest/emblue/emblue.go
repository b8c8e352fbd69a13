package emblue

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/mailfunnel/mailfunnel/ingest/jsonfield"

	"github.com/valyala/fastjson"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/ingest"
)

// Name is the provider name used in URLs and in event.Provider.
const Name = "emblue"

// MaxElements is the most activities one body may carry. emBlue posts one
// per request; the limit only bounds what a hostile array can make Parse
// allocate beyond the HTTP size limit.
const MaxElements = 100_000

// ErrTooManyElements is the Err of the *ingest.ElementError returned for a
// body with more than MaxElements elements.
var ErrTooManyElements = fmt.Errorf("more than %d elements in one body", MaxElements)

// errZeroRecv reports a caller bug: without a receive time, events without a
// timestamp would get no event time.
var errZeroRecv = errors.New("emblue: zero receive time")

// Adapter parses emBlue activity webhook bodies. The zero value is ready to
// use and safe for concurrent use.
type Adapter struct {
	parsers fastjson.ParserPool
}

var _ ingest.Adapter = (*Adapter)(nil)

// New returns an Adapter.
func New() *Adapter { return &Adapter{} }

// Provider returns "emblue".
func (*Adapter) Provider() string { return Name }

// Parse implements ingest.Adapter. See the package comment for the mapping.
func (a *Adapter) Parse(src ingest.Source, body []byte, recv time.Time) ([]event.Event, error) {
	if recv.IsZero() {
		return nil, errZeroRecv
	}
	p := a.parsers.Get()
	defer a.parsers.Put(p)
	root, err := p.ParseBytes(body)
	if err != nil {
		return nil, jsonfield.SyntaxError(body, err)
	}
	name := src.Name
	if name == "" {
		name = Name // the contract's default source
	}
	recv = recv.UTC().Truncate(time.Microsecond)

	switch root.Type() {
	case fastjson.TypeObject:
		// The body emBlue sends: one activity per request.
		out := make([]event.Event, 1)
		if err := parseElement(&out[0], root, nil, name, src.Location, recv); err != nil {
			return nil, err
		}
		return out, nil
	case fastjson.TypeArray:
		elems, _ := root.Array()
		if len(elems) > MaxElements {
			return nil, &ingest.ElementError{Index: MaxElements, Err: ErrTooManyElements}
		}
		if len(elems) == 0 {
			return nil, nil
		}
		out := make([]event.Event, len(elems))
		for i, v := range elems {
			var prev *event.Event
			if i > 0 {
				prev = &out[i-1]
			}
			if err := parseElement(&out[i], v, prev, name, src.Location, recv); err != nil {
				err.Index = i
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: body is a JSON %s, want an activity object or an array of them", ingest.ErrSyntax, root.Type())
}

// parseElement fills e from one activity. prev is the previous event of an
// array body (nil for the first): equal account, campaign and send type
// strings are shared instead of copied again.
func parseElement(e *event.Event, v *fastjson.Value, prev *event.Event, source string, loc *time.Location, recv time.Time) *ingest.ElementError {
	o, err := v.Object()
	if err != nil {
		return &ingest.ElementError{Err: fmt.Errorf("element is a JSON %s, want an object", v.Type())}
	}
	var account, action, typeID, activity, email, timestamp, url *fastjson.Value
	// One pass over the members; Object.Get would scan them once per field.
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "account_id":
			account = v
		case "action_id":
			action = v
		case "type_id":
			typeID = v
		case "activity_id":
			activity = v
		case "email":
			email = v
		case "timestamp":
			timestamp = v
		case "url":
			url = v
		}
	})
	var buf [32]byte // number literals, see scalar
	fail := func(field string, err error) *ingest.ElementError {
		return &ingest.ElementError{Field: field, Err: err}
	}
	var p event.Event // fields of prev to share strings with
	if prev != nil {
		p = *prev
	}

	id, err := jsonfield.Trimmed(activity, buf[:])
	if err != nil {
		return fail("activity_id", err)
	}
	if len(id) == 0 {
		return fail("activity_id", errors.New("missing activity_id"))
	}
	e.Type, e.ProviderEvent = mapActivity(id)
	if e.Type == event.Other {
		e.ProviderEvent = share(p.ProviderEvent, id)
	}
	e.Source, e.Provider = source, Name

	r, err := jsonfield.Scalar(email, buf[:])
	if err != nil {
		return fail("email", err)
	}
	if len(bytes.TrimSpace(r)) == 0 && e.Type != event.Other {
		// An event without an address cannot count in a funnel; activities
		// the adapter does not know are kept anyway, as the contract says.
		return fail("email", errors.New("missing email"))
	}
	e.Recipient = string(r)
	e.RecipientDomain = event.Domain(e.Recipient)

	ts, err := jsonfield.Trimmed(timestamp, buf[:])
	if err != nil {
		return fail("timestamp", err)
	}
	if len(ts) == 0 {
		e.EventTime, e.TimeFromReceive = recv, true
	} else if e.EventTime, err = parseTime(ts, loc); err != nil {
		return fail("timestamp", err)
	}
	e.ReceivedTime = recv

	for _, s := range [...]struct {
		field string
		v     *fastjson.Value
		dst   *string
		prev  string
	}{
		{"account_id", account, &e.Account, p.Account},
		{"action_id", action, &e.Campaign, p.Campaign},
		{"type_id", typeID, &e.SendType, p.SendType},
		{"url", url, &e.URL, p.URL},
	} {
		b, err := jsonfield.Trimmed(s.v, buf[:])
		if err != nil {
			return fail(s.field, err)
		}
		*s.dst = share(s.prev, b)
	}
	if e.Account == "" {
		// Funnels are per account; an activity without one belongs to the
		// endpoint's source, as every SendPulse event does.
		e.Account = source
	}
	return nil
}

// share returns prev when it equals b, else a copy of b: the comparison
// does not allocate, the copy is what detaches the event from the parser.
func share(prev string, b []byte) string {
	if prev == string(b) {
		return prev
	}
	return string(b)
}

// mapActivity maps an activity id to its type. Leading zeros are ignored so
// that 1, "1" and "01" are one activity; for the known ids the returned
// provider event is the canonical id, a constant. Any other id, numeric or
// not, is Other, and the caller keeps it verbatim.
func mapActivity(id []byte) (event.Type, string) {
	for len(id) > 1 && id[0] == '0' {
		id = id[1:]
	}
	switch string(id) {
	case "1":
		return event.Sent, "1"
	case "2":
		return event.Opened, "2"
	case "3":
		return event.Clicked, "3"
	case "4":
		return event.Subscribed, "4"
	case "5":
		return event.Unsubscribed, "5"
	case "6":
		return event.Complained, "6"
	}
	return event.Other, ""
}

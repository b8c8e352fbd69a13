package sendpulse

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mailfunnel/mailfunnel/ingest/jsonfield"

	"github.com/valyala/fastjson"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/ingest"
)

// Name is the provider name used in URLs and in event.Provider.
const Name = "sendpulse"

// MaxElements is the most events one body may carry. SendPulse sends at most
// 500 per request; the limit only bounds the memory a hostile body can make
// Parse allocate beyond the HTTP size limit.
const MaxElements = 100_000

// ErrTooManyElements is the Err of the *ingest.ElementError returned for a
// body with more than MaxElements elements.
var ErrTooManyElements = fmt.Errorf("more than %d elements in one body", MaxElements)

// errZeroRecv reports a caller bug: without a receive time, events without a
// timestamp would get no event time.
var errZeroRecv = errors.New("sendpulse: zero receive time")

// Adapter parses SendPulse webhook bodies. The zero value is ready to use
// and safe for concurrent use.
type Adapter struct {
	states sync.Pool // *state
}

var _ ingest.Adapter = (*Adapter)(nil)

// New returns an Adapter.
func New() *Adapter { return &Adapter{} }

// Provider returns "sendpulse".
func (*Adapter) Provider() string { return Name }

// state is what one Parse call needs besides its arguments. It is pooled:
// the fastjson parser keeps its value cache and buffer between calls, which
// is most of fastjson's speed.
type state struct {
	p       fastjson.Parser
	scratch []byte             // body copy when trailing commas are blanked
	one     [1]*fastjson.Value // the element list of a single-object body
}

// maxPooledScratch keeps one huge body from pinning its copy in the pool.
const maxPooledScratch = 1 << 20

// Parse implements ingest.Adapter. See the package comment for the mapping.
func (a *Adapter) Parse(src ingest.Source, body []byte, recv time.Time) ([]event.Event, error) {
	if recv.IsZero() {
		return nil, errZeroRecv
	}
	st, _ := a.states.Get().(*state)
	if st == nil {
		st = new(state)
	}
	defer func() {
		if cap(st.scratch) > maxPooledScratch {
			st.scratch = nil
		}
		st.one[0] = nil
		a.states.Put(st)
	}()

	in := blankTrailingCommas(&st.scratch, body)
	root, err := st.p.ParseBytes(in)
	if err != nil {
		return nil, jsonfield.SyntaxError(in, err)
	}
	var elems []*fastjson.Value
	switch root.Type() {
	case fastjson.TypeArray:
		elems, _ = root.Array()
	case fastjson.TypeObject:
		st.one[0] = root
		elems = st.one[:]
	default:
		return nil, fmt.Errorf("%w: body is a JSON %s, want an array of events or an event object", ingest.ErrSyntax, root.Type())
	}
	if len(elems) > MaxElements {
		return nil, &ingest.ElementError{Index: MaxElements, Err: ErrTooManyElements}
	}
	if len(elems) == 0 {
		return nil, nil
	}

	name := src.Name
	if name == "" {
		name = Name // the contract's default source
	}
	recv = recv.UTC().Truncate(time.Microsecond)
	out := make([]event.Event, len(elems))
	for i, v := range elems {
		var prev *event.Event
		if i > 0 {
			prev = &out[i-1]
		}
		if err := parseElement(&out[i], v, prev, name, recv); err != nil {
			err.Index = i
			return nil, err
		}
	}
	return out, nil
}

// fields holds the members of one element that the mapping reads.
type fields struct {
	event, recipient, email, timestamp             *fastjson.Value
	code, subcode, response                        *fastjson.Value
	messageID, sender, subject, taskID, campaignID *fastjson.Value
	url, link, linkURL                             *fastjson.Value
}

// parseElement fills e from one element. prev is the previous event of the
// body (nil for the first): SendPulse batches repeat the subject, sender and
// task of one send, so equal strings are shared instead of copied again.
func parseElement(e *event.Event, v *fastjson.Value, prev *event.Event, source string, recv time.Time) *ingest.ElementError {
	o, err := v.Object()
	if err != nil {
		return &ingest.ElementError{Err: fmt.Errorf("element is a JSON %s, want an object", v.Type())}
	}
	var f fields
	// One pass over the members; Object.Get would scan them once per field.
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch string(k) {
		case "event":
			f.event = v
		case "recipient":
			f.recipient = v
		case "email":
			f.email = v
		case "timestamp":
			f.timestamp = v
		case "smtp_server_response_code":
			f.code = v
		case "smtp_server_response_subcode":
			f.subcode = v
		case "smtp_server_response":
			f.response = v
		case "message_id":
			f.messageID = v
		case "sender":
			f.sender = v
		case "subject":
			f.subject = v
		case "task_id":
			f.taskID = v
		case "campaign_id":
			f.campaignID = v
		case "url":
			f.url = v
		case "link":
			f.link = v
		case "link_url":
			f.linkURL = v
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

	name, err := jsonfield.Trimmed(f.event, buf[:])
	if err != nil {
		return fail("event", err)
	}
	if len(name) == 0 {
		return fail("event", errors.New("missing event name"))
	}
	e.Type, e.ProviderEvent = mapEvent(name)
	if e.Type == event.Other {
		e.ProviderEvent = share(p.ProviderEvent, name)
	}
	e.Source, e.Provider, e.Account = source, Name, source

	// recipient, or email as the bulk service and the bounce events send it.
	rf, rv := "recipient", f.recipient
	if isAbsent(rv) {
		rf, rv = "email", f.email
	}
	r, err := jsonfield.Scalar(rv, buf[:])
	if err != nil {
		return fail(rf, err)
	}
	if len(bytes.TrimSpace(r)) == 0 && e.Type != event.Other {
		// An event without an address cannot count in a funnel; events the
		// adapter does not know (list events, task status) are kept anyway.
		return fail("recipient", errors.New("missing recipient (or email)"))
	}
	e.Recipient = string(r)
	e.RecipientDomain = event.Domain(e.Recipient)

	ts, err := jsonfield.Trimmed(f.timestamp, buf[:])
	if err != nil {
		return fail("timestamp", err)
	}
	if len(ts) == 0 {
		e.EventTime, e.TimeFromReceive = recv, true
	} else if e.EventTime, err = parseUnix(ts); err != nil {
		return fail("timestamp", err)
	}
	e.ReceivedTime = recv

	code, err := jsonfield.Trimmed(f.code, buf[:])
	if err == nil {
		e.SMTPCode, err = parseCode(code)
	}
	if err != nil {
		return fail("smtp_server_response_code", err)
	}

	for _, s := range [...]struct {
		field string
		v     *fastjson.Value
		dst   *string
		prev  string
		trim  bool // see the package comment: names and ids lose outer spaces
	}{
		{"smtp_server_response_subcode", f.subcode, &e.SMTPStatus, p.SMTPStatus, true},
		{"smtp_server_response", f.response, &e.SMTPResponse, p.SMTPResponse, true},
		{"message_id", f.messageID, &e.MessageID, p.MessageID, true},
		{"sender", f.sender, &e.Sender, p.Sender, false},
		{"subject", f.subject, &e.Subject, p.Subject, false},
	} {
		b, err := jsonfield.Scalar(s.v, buf[:])
		if s.trim {
			b = bytes.TrimSpace(b)
		}
		if err != nil {
			return fail(s.field, err)
		}
		*s.dst = share(s.prev, b)
	}

	// campaign: task_id (both dialects), campaign_id (some bulk payloads),
	// else the subject, so that transactional mail without a task still
	// groups by what was sent.
	e.Campaign = e.Subject
	for _, c := range [...]struct {
		field string
		v     *fastjson.Value
	}{{"campaign_id", f.campaignID}, {"task_id", f.taskID}} {
		b, err := jsonfield.Trimmed(c.v, buf[:])
		if err != nil {
			return fail(c.field, err)
		}
		if len(b) > 0 {
			e.Campaign = share(p.Campaign, b)
		}
	}

	for _, u := range [...]struct {
		field string
		v     *fastjson.Value
	}{{"link", f.link}, {"link_url", f.linkURL}, {"url", f.url}} {
		b, err := jsonfield.Trimmed(u.v, buf[:])
		if err != nil {
			return fail(u.field, err)
		}
		if len(b) > 0 {
			e.URL = share(p.URL, b)
		}
	}
	return nil
}

// isAbsent reports whether a member is missing, null or an empty string.
func isAbsent(v *fastjson.Value) bool {
	if v == nil {
		return true
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return true
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return len(b) == 0
	}
	return false
}

// share returns prev when it equals b, else a copy of b: the comparison
// does not allocate, the copy is what detaches the event from the parser.
func share(prev string, b []byte) string {
	if prev == string(b) {
		return prev
	}
	return string(b)
}

// mapEvent maps a SendPulse event name of either dialect to its type. The
// returned provider name is a constant for known names, so they cost no
// allocation; for Other the caller copies the name.
func mapEvent(name []byte) (event.Type, string) {
	switch string(name) {
	// SMTP (transactional) service.
	case "delivered":
		return event.Delivered, "delivered"
	case "undelivered":
		return event.Undelivered, "undelivered"
	case "opened":
		return event.Opened, "opened"
	case "clicked":
		return event.Clicked, "clicked"
	case "unsubscribed":
		return event.Unsubscribed, "unsubscribed"
	case "spam_by_user":
		return event.Complained, "spam_by_user"
	case "resubscribed":
		return event.Subscribed, "resubscribed"
	// Both dialects.
	case "soft_bounces":
		return event.SoftBounce, "soft_bounces"
	case "hard_bounces":
		return event.HardBounce, "hard_bounces"
	// Bulk email service.
	case "open":
		return event.Opened, "open"
	case "redirect":
		return event.Clicked, "redirect"
	case "unsubscribe":
		return event.Unsubscribed, "unsubscribe"
	case "spam":
		return event.Complained, "spam"
	}
	return event.Other, ""
}

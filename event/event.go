// Package event defines the canonical email event that every layer of
// mailfunnel speaks: provider adapters produce it, the storage log persists
// it, the engine aggregates it and the exporter writes it to Parquet.
//
// The package is deliberately dependency-free so that parsers, the store and
// the query layer can share it without import cycles. Field names and the
// Type vocabulary follow the external contract (CONTRACT.md, "Event model").
package event

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Type is the canonical event type. The zero value is invalid; adapters map
// every provider event name to one of the constants below, using Other for
// names they do not know so that nothing a provider sends is ever rejected
// for its name alone.
type Type uint8

// The canonical types. The numeric values are persisted in the log encoding:
// append new types at the end, never renumber.
const (
	TypeInvalid Type = iota
	Sent
	Delivered
	Undelivered
	SoftBounce
	HardBounce
	Opened
	Clicked
	Unsubscribed
	Subscribed
	Complained
	Other
	numTypes
)

// NumTypes is the number of valid types plus one; arrays indexed by Type use
// it as their length.
const NumTypes = int(numTypes)

var typeNames = [...]string{
	TypeInvalid:  "",
	Sent:         "sent",
	Delivered:    "delivered",
	Undelivered:  "undelivered",
	SoftBounce:   "soft_bounce",
	HardBounce:   "hard_bounce",
	Opened:       "opened",
	Clicked:      "clicked",
	Unsubscribed: "unsubscribed",
	Subscribed:   "subscribed",
	Complained:   "complained",
	Other:        "other",
}

// String returns the contract name of the type ("soft_bounce", ...).
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Valid reports whether t is one of the canonical types.
func (t Type) Valid() bool { return t > TypeInvalid && t < numTypes }

// IsBounce reports whether events of this type carry an SMTP failure that the
// bounce classifier should explain.
func (t Type) IsBounce() bool { return t == SoftBounce || t == HardBounce || t == Undelivered }

// ParseType is the inverse of Type.String.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if i > 0 && n == s {
			return Type(i), true
		}
	}
	return TypeInvalid, false
}

// Types lists every valid type in numeric order.
func Types() []Type {
	out := make([]Type, 0, NumTypes-1)
	for t := Sent; t < numTypes; t++ {
		out = append(out, t)
	}
	return out
}

// Event is one provider event in canonical form.
//
// Seq is assigned by the storage log on append and is zero before that.
// EventTime is the provider's timestamp, or the receive time when the
// provider sent none (TimeFromReceive records which, so that deduplication
// does not depend on when a redelivery happened to arrive). All times are UTC.
type Event struct {
	Seq             uint64
	Source          string // the ingest endpoint's source name; defaults to the provider
	Provider        string // "sendpulse", "emblue", ...
	ProviderEvent   string // the provider's own event name or id, verbatim
	Account         string
	Campaign        string
	MessageID       string
	Recipient       string // as sent by the provider (case and spaces kept)
	RecipientDomain string // lower-cased domain part of Recipient
	Type            Type
	EventTime       time.Time
	ReceivedTime    time.Time
	TimeFromReceive bool
	SMTPCode        int32  // 0 when absent
	SMTPStatus      string // enhanced status such as "5.1.1"; empty when absent
	SMTPResponse    string
	BounceClass     string // set by the engine's classifier, empty in the log
	BounceReason    string
	URL             string
	Subject         string
	Sender          string
	SendType        string // emBlue's type_id, verbatim
}

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid event")

// Validate checks the invariants every adapter must establish before an
// event reaches the log.
func (e *Event) Validate() error {
	switch {
	case !e.Type.Valid():
		return fmt.Errorf("%w: type %d", ErrInvalid, e.Type)
	case e.Provider == "":
		return fmt.Errorf("%w: empty provider", ErrInvalid)
	case e.Source == "":
		return fmt.Errorf("%w: empty source", ErrInvalid)
	case e.ProviderEvent == "":
		return fmt.Errorf("%w: empty provider_event", ErrInvalid)
	case e.EventTime.IsZero():
		return fmt.Errorf("%w: zero event_time", ErrInvalid)
	case e.ReceivedTime.IsZero():
		return fmt.Errorf("%w: zero received_time", ErrInvalid)
	case e.RecipientDomain != Domain(e.Recipient):
		return fmt.Errorf("%w: recipient_domain %q does not match recipient %q", ErrInvalid, e.RecipientDomain, e.Recipient)
	}
	return nil
}

// NormalizeRecipient returns the form in which recipients are compared:
// trimmed of white space and lower-cased, as the contract requires.
func NormalizeRecipient(r string) string {
	r = strings.TrimSpace(r)
	for i := 0; i < len(r); i++ {
		c := r[i]
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			return strings.ToLower(r)
		}
	}
	return r
}

// Domain returns the lower-cased domain of a recipient address, or "" when
// the address has no '@'.
func Domain(recipient string) string {
	r := NormalizeRecipient(recipient)
	i := strings.LastIndexByte(r, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimRight(r[i+1:], ">")
}

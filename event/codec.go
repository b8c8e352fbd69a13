package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// codecVersion prefixes every encoded event so that the format can evolve
// without rewriting the log: a decoder that sees an unknown version fails
// loudly instead of misreading fields.
const codecVersion = 1

// ErrCorrupt is returned by Decode for bytes that are not a valid encoding.
var ErrCorrupt = errors.New("corrupt event encoding")

// Append appends the compact binary encoding of e to dst. The log stores
// events in this form: it is several times smaller and faster to decode than
// JSON, which matters because the engine, rebuild and export all read it.
// BounceClass and BounceReason are not encoded: they are derived by the
// engine, so a better classifier can re-derive them from the raw event.
func Append(dst []byte, e *Event) []byte {
	dst = append(dst, codecVersion, byte(e.Type))
	flags := byte(0)
	if e.TimeFromReceive {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, e.Seq)
	dst = binary.AppendVarint(dst, e.EventTime.UnixMicro())
	dst = binary.AppendVarint(dst, e.ReceivedTime.UnixMicro())
	dst = binary.AppendVarint(dst, int64(e.SMTPCode))
	for _, s := range [...]string{
		e.Source, e.Provider, e.ProviderEvent, e.Account, e.Campaign,
		e.MessageID, e.Recipient, e.SMTPStatus, e.SMTPResponse, e.URL,
		e.Subject, e.Sender, e.SendType,
	} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// Decode decodes one event from the front of b into e and returns the number
// of bytes consumed. Strings in e do not alias b, so b may be reused; they
// share one allocation, so keeping any field keeps the event's strings alive.
func Decode(b []byte, e *Event) (int, error) { return decode(b, e, false) }

// DecodeView is Decode without the allocation: e's strings alias b, so
// they are valid only while b is unchanged and must be copied by whoever
// keeps them. It is for readers that copy every field anyway (the
// Parquet exporter, which packs strings into its own blocks); an event
// decoded this way must never reach code that keeps a string, such as the
// engine's caches.
func DecodeView(b []byte, e *Event) (int, error) { return decode(b, e, true) }

func decode(b []byte, e *Event, view bool) (int, error) {
	if len(b) < 3 {
		return 0, fmt.Errorf("%w: short header", ErrCorrupt)
	}
	if b[0] != codecVersion {
		return 0, fmt.Errorf("%w: version %d", ErrCorrupt, b[0])
	}
	*e = Event{Type: Type(b[1]), TimeFromReceive: b[2]&1 != 0}
	p := 3
	u, n := binary.Uvarint(b[p:])
	if n <= 0 {
		return 0, fmt.Errorf("%w: seq", ErrCorrupt)
	}
	e.Seq = u
	p += n
	var ints [3]int64
	for i := range ints {
		v, n := binary.Varint(b[p:])
		if n <= 0 {
			return 0, fmt.Errorf("%w: integer field %d", ErrCorrupt, i)
		}
		ints[i] = v
		p += n
	}
	e.EventTime = time.UnixMicro(ints[0]).UTC()
	e.ReceivedTime = time.UnixMicro(ints[1]).UTC()
	e.SMTPCode = int32(ints[2])
	// The strings are read in two passes: first their spans, then one
	// string conversion of the whole region, of which every field is a
	// substring. One allocation per event instead of thirteen: the engine,
	// rebuild and export all decode every event.
	dsts := [...]*string{
		&e.Source, &e.Provider, &e.ProviderEvent, &e.Account, &e.Campaign,
		&e.MessageID, &e.Recipient, &e.SMTPStatus, &e.SMTPResponse, &e.URL,
		&e.Subject, &e.Sender, &e.SendType,
	}
	var spans [len(dsts)][2]int
	start := p
	for i := range dsts {
		l, n := binary.Uvarint(b[p:])
		if n <= 0 || l > uint64(len(b)-p-n) {
			return 0, fmt.Errorf("%w: string field %d", ErrCorrupt, i)
		}
		p += n
		spans[i] = [2]int{p - start, p - start + int(l)}
		p += int(l)
	}
	var region string
	if view {
		region = unsafe.String(unsafe.SliceData(b[start:p]), p-start)
	} else {
		region = string(b[start:p])
	}
	for i, dst := range dsts {
		*dst = region[spans[i][0]:spans[i][1]]
	}
	e.RecipientDomain = Domain(e.Recipient)
	return p, nil
}

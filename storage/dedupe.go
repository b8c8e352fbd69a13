package storage

import (
	"encoding/binary"
	"strconv"

	"github.com/zeebo/xxh3"

	"github.com/mailfunnel/mailfunnel/event"
)

// Hash identifies an event for deduplication: the 128-bit xxh3 of its
// canonical provider fields. 128 bits make an accidental collision (which
// would drop a real event) negligible even over billions of events.
type Hash [16]byte

// HashEvent hashes what the provider sent for e: everything but the receive
// time, and the event time only when the provider gave one. Two deliveries of
// the same provider event therefore hash equal however late the second one
// arrives. The recipient is hashed as sent, since the provider resends its
// own bytes.
func HashEvent(e *event.Event) Hash {
	var stack [512]byte
	b := stack[:0]
	for _, s := range [...]string{
		e.Provider, e.Source, e.ProviderEvent, e.Account, e.Campaign, e.MessageID,
		e.Recipient, e.SMTPStatus, e.SMTPResponse, e.URL, e.Subject, e.Sender, e.SendType,
	} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, byte(e.Type))
	b = strconv.AppendInt(b, int64(e.SMTPCode), 10)
	if !e.TimeFromReceive {
		b = binary.AppendVarint(b, e.EventTime.UnixMicro())
	}
	return Hash(xxh3.Hash128(b).Bytes())
}

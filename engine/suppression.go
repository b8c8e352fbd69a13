package engine

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

// Suppressions: the addresses senders must not mail again. Suppression is
// per normalised recipient address, across every source, account and
// campaign: senders check the list before each send, and a mailbox that
// does not exist or a person who complained does not care which campaign
// asked. The record keeps the source, account and campaign of the event
// that caused it.
//
// Rules, applied to events in log order, with event time deciding which
// event is the cause:
//
//   - hard_bounce: a soft_bounce, hard_bounce or undelivered event whose
//     class, by the classifier (bounce.Classify), is hard. The provider's
//     label does not decide: "hard_bounces" for a full mailbox is soft, and
//     a block list verdict is about the sender, not the address.
//   - complaint: a complained event.
//   - unsubscribe: an unsubscribed event.
//   - soft_bounces: SoftCount bounces classed soft or undetermined whose
//     event times lie within less than SoftWindow of each other (t_N - t_1 <
//     window), in any order of arrival.
//
// The suppression's time and cause is the candidate that is earliest in
// (event time, seq) order: the qualifying event itself, or for
// soft_bounces the bounce that completes the earliest window. A late
// event with an earlier time replaces the cause, so the answer does not
// depend on arrival order.
//
// An operator lifts a suppression (DELETE /v1/suppressions/{recipient}).
// The lift is recorded at the engine's position in the log (the last
// applied seq) in a lift journal, and it makes the engine forget every
// event of that recipient up to that position: only events later in the
// log can suppress it again (a new hard bounce, complaint or unsubscribe,
// or SoftCount new soft bounces). The state is thus a deterministic
// function of the log and the journal; a rebuild carries the journal over
// (Lifts, ImportLifts) and replays each lift at its seq.
//
//	'r' 0, recipient          -> the all-campaigns record (format.go) holds the apply-side state: lift seq, cause, soft bounces since the lift
//	'S' recipient             -> the suppression as the API shows it (JSON), present while suppressed
//	'L' uint64 BE seq, recipient -> (empty) lift journal
const (
	prefixSupPub = 'S'
	prefixLift   = 'L'
)

// Suppression reasons.
const (
	ReasonHardBounce  = "hard_bounce"
	ReasonComplaint   = "complaint"
	ReasonUnsubscribe = "unsubscribe"
	ReasonSoftBounces = "soft_bounces"
)

// SuppressionReasons lists the reasons.
var SuppressionReasons = []string{ReasonHardBounce, ReasonComplaint, ReasonUnsubscribe, ReasonSoftBounces}

// maxSoftBounces bounds the soft bounces kept per recipient (the newest
// by event time stay). Only a recipient with more soft bounces than this
// that never reach SoftCount within SoftWindow, and then receives a late
// one older than all of them, could be judged differently from the rule.
const maxSoftBounces = 64

// supCause is one qualifying event, as much as a suppression record shows.
type supCause struct {
	t      int64 // event time, Unix micros
	seq    uint64
	cid    uint32
	typ    event.Type
	pevent string // provider_event
	class  string // bounce class, bounces only
	reason string // bounce reason, bounces only
}

func (a *supCause) before(b *supCause) bool { return a.t < b.t || a.t == b.t && a.seq < b.seq }

// supState is a recipient's apply-side suppression record.
type supState struct {
	liftSeq uint64
	reason  byte // 0: not suppressed, else index+1 in SuppressionReasons
	cause   supCause
	softs   []supCause // since the lift, sorted by (t, seq); none after cause
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendCause(dst []byte, c *supCause) []byte {
	dst = binary.AppendVarint(dst, c.t)
	dst = binary.AppendUvarint(dst, c.seq)
	dst = binary.AppendUvarint(dst, uint64(c.cid))
	dst = append(dst, byte(c.typ))
	dst = appendString(dst, c.pevent)
	dst = appendString(dst, c.class)
	return appendString(dst, c.reason)
}

func (s *supState) encode(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, s.liftSeq)
	dst = append(dst, s.reason)
	if s.reason != 0 {
		dst = appendCause(dst, &s.cause)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.softs)))
	for i := range s.softs {
		dst = appendCause(dst, &s.softs[i])
	}
	return dst
}

// supDecoder reads a supState; the first error sticks.
type supDecoder struct {
	v   []byte
	err error
}

func (d *supDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, k := binary.Uvarint(d.v)
	if k <= 0 {
		d.err = fmt.Errorf("suppression record: %w", errCorrupt)
		return 0
	}
	d.v = d.v[k:]
	return x
}

func (d *supDecoder) byte() byte {
	if d.err != nil || len(d.v) == 0 {
		d.err = fmt.Errorf("suppression record: %w", errCorrupt)
		return 0
	}
	b := d.v[0]
	d.v = d.v[1:]
	return b
}

func (d *supDecoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.v)) {
		d.err = fmt.Errorf("suppression record: %w", errCorrupt)
		return ""
	}
	s := string(d.v[:n])
	d.v = d.v[n:]
	return s
}

func (d *supDecoder) cause() supCause {
	var c supCause
	if d.err != nil {
		return c
	}
	t, k := binary.Varint(d.v)
	if k <= 0 {
		d.err = fmt.Errorf("suppression record: %w", errCorrupt)
		return c
	}
	d.v = d.v[k:]
	c.t = t
	c.seq = d.uvarint()
	c.cid = uint32(d.uvarint())
	c.typ = event.Type(d.byte())
	c.pevent = d.string()
	c.class = d.string()
	c.reason = d.string()
	return c
}

func (s *supState) decode(v []byte) error {
	d := supDecoder{v: v}
	*s = supState{}
	s.liftSeq = d.uvarint()
	s.reason = d.byte()
	if s.reason > byte(len(SuppressionReasons)) {
		return fmt.Errorf("suppression reason: %w", errCorrupt)
	}
	if s.reason != 0 {
		s.cause = d.cause()
	}
	n := d.uvarint()
	if n > maxSoftBounces {
		return fmt.Errorf("suppression soft bounces: %w", errCorrupt)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		s.softs = append(s.softs, d.cause())
	}
	if d.err == nil && len(d.v) != 0 {
		return fmt.Errorf("suppression record length: %w", errCorrupt)
	}
	return d.err
}

func supPubKey(recipient string) []byte {
	return append([]byte{prefixSupPub}, recipient...)
}

// supPubKey returns the API record key of recipient, in the stage arena.
func (a *stageArena) supPubKey(recipient string) []byte {
	return a.keep(append(append(a.free(1+len(recipient)), prefixSupPub), recipient...))
}

func liftKey(seq uint64, recipient string) string {
	b := make([]byte, 9, 9+len(recipient))
	b[0] = prefixLift
	binary.BigEndian.PutUint64(b[1:], seq)
	return string(append(b, recipient...))
}

// Lift is one entry of the lift journal: recipient's history up to and
// including event Seq is forgotten.
type Lift struct {
	Seq       uint64 `json:"seq"`
	Recipient string `json:"recipient"`
}

// suppressReason returns the rule an event falls under (index+1 in
// SuppressionReasons), or 0.
func suppressReason(typ event.Type, class bounce.Class) byte {
	switch {
	case typ == event.Complained:
		return 2
	case typ == event.Unsubscribed:
		return 3
	case !typ.IsBounce():
		return 0
	case class == bounce.Hard:
		return 1
	}
	return 4
}

// applySuppression folds one event of a non-empty recipient into its
// suppression record. br is the event's classification (bounces only).
func (e *Engine) applySuppression(c *campaign, ev *event.Event, r string, t int64, br *bounce.Result) error {
	reason := suppressReason(ev.Type, br.Class)
	if reason == 0 || reason == 4 && e.softCount <= 0 {
		return nil
	}
	e.kbuf = appendRecKey(e.kbuf[:0], allCampaigns, r)
	re, err := e.recipient(e.kbuf)
	if err != nil {
		return err
	}
	if re.sup == nil {
		re.sup = &supState{}
	}
	s := re.sup
	cz := supCause{t: t, seq: ev.Seq, cid: c.ID, typ: ev.Type, pevent: ev.ProviderEvent}
	if ev.Type.IsBounce() {
		cz.class, cz.reason = string(br.Class), br.Reason
	}
	if s.reason != 0 && !cz.before(&s.cause) {
		return nil // cannot move an earlier suppression, nor make a window that completes earlier
	}
	cand := cz
	if reason == 4 {
		i := sort.Search(len(s.softs), func(i int) bool { return cz.before(&s.softs[i]) })
		s.softs = append(s.softs, supCause{})
		copy(s.softs[i+1:], s.softs[i:])
		s.softs[i] = cz
		if len(s.softs) > maxSoftBounces {
			s.softs = append(s.softs[:0], s.softs[1:]...)
		}
		e.markDirty(re)
		j := e.softWindow(s.softs)
		if j < 0 {
			return nil
		}
		cand = s.softs[j]
	}
	if s.reason != 0 && !cand.before(&s.cause) {
		return nil
	}
	s.reason, s.cause = reason, cand
	// Soft bounces after the cause can no longer matter.
	n := 0
	for n < len(s.softs) && !s.cause.before(&s.softs[n]) {
		n++
	}
	s.softs = s.softs[:n]
	e.markDirty(re)
	return e.publish(re, r, s)
}

// softWindow returns the index of the soft bounce that completes the
// earliest window of softCount bounces within softWindow, or -1.
func (e *Engine) softWindow(softs []supCause) int {
	n := e.softCount
	for i := n - 1; i < len(softs); i++ {
		if softs[i].t-softs[i-n+1].t < e.softWindowUS {
			return i
		}
	}
	return -1
}

// publish stages the API's record of r ('S'), or its removal when r is not
// suppressed; re is r's suppression record. In bulk mode it is staged when
// re is written (stagePublished): a recipient whose suppression changes
// several times is published once, and the cache does not hold the JSON.
func (e *Engine) publish(re *recEntry, r string, s *supState) error {
	if e.cfg.Bulk {
		re.pub = true
		return nil
	}
	v, err := e.published(r, s)
	if err != nil {
		return err
	}
	e.dirtySup[r] = v
	return nil
}

// stagePublished stages the 'S' record of suppression record re.
func (e *Engine) stagePublished(txn writer, a *stageArena, re *recEntry) error {
	r := re.key[5:] // an all-campaigns record's key: 'r', cid 0, recipient
	v, err := e.published(r, re.sup)
	if err != nil {
		return err
	}
	if err := stageSup(txn, a, r, v); err != nil {
		return err
	}
	re.pub = false
	return nil
}

// stageSup stages recipient r's API suppression record v ('S'), or its
// deletion when v is nil.
func stageSup(txn writer, a *stageArena, r string, v []byte) error {
	var err error
	if v == nil {
		err = txn.Delete(a.supPubKey(r))
	} else {
		err = txn.Set(a.supPubKey(r), v)
	}
	if err != nil {
		return fmt.Errorf("stage suppression: %w", err)
	}
	return nil
}

// published is the API's record of r with suppression state s, nil when r
// is not suppressed.
func (e *Engine) published(r string, s *supState) ([]byte, error) {
	if s.reason == 0 {
		return nil, nil
	}
	c := e.campByID[s.cause.cid]
	if c == nil {
		return nil, fmt.Errorf("suppression of campaign %d: %w", s.cause.cid, errCorrupt)
	}
	sp := Suppression{
		Recipient: r, Reason: SuppressionReasons[s.reason-1], SuppressedAt: time.UnixMicro(s.cause.t).UTC(),
		Event: SuppressionEvent{
			Seq: s.cause.seq, Source: c.Source, Account: c.Account, Campaign: c.Campaign,
			ProviderEvent: s.cause.pevent, Type: s.cause.typ.String(), EventTime: time.UnixMicro(s.cause.t).UTC(),
			BounceClass: s.cause.class, BounceReason: s.cause.reason,
		},
	}
	return json.Marshal(&sp)
}

// liftState forgets recipient r's history up to seq.
func (e *Engine) liftState(r string, seq uint64) error {
	e.kbuf = appendRecKey(e.kbuf[:0], allCampaigns, r)
	re, err := e.recipient(e.kbuf)
	if err != nil {
		return err
	}
	re.sup = &supState{liftSeq: seq}
	e.markDirty(re)
	return e.publish(re, r, re.sup)
}

// applyDueLifts replays journal lifts recorded at or before seq (after a
// rebuild's ImportLifts).
func (e *Engine) applyDueLifts(seq uint64) error {
	for len(e.liftQ) > 0 && e.liftQ[0].Seq <= seq {
		if err := e.liftState(e.liftQ[0].Recipient, e.liftQ[0].Seq); err != nil {
			return err
		}
		e.liftQ = e.liftQ[1:]
	}
	return nil
}

// SuppressionEvent is the event that caused a suppression.
type SuppressionEvent struct {
	Seq           uint64    `json:"seq"`
	Source        string    `json:"source"`
	Account       string    `json:"account"`
	Campaign      string    `json:"campaign"`
	ProviderEvent string    `json:"provider_event"`
	Type          string    `json:"type"`
	EventTime     time.Time `json:"event_time"`
	BounceClass   string    `json:"bounce_class,omitempty"`
	BounceReason  string    `json:"bounce_reason,omitempty"`
}

// Suppression is a suppressed address: why, since when (the causing
// event's time) and the event that caused it.
type Suppression struct {
	Recipient    string           `json:"recipient"`
	Reason       string           `json:"reason"`
	SuppressedAt time.Time        `json:"suppressed_at"`
	Event        SuppressionEvent `json:"event"`
}

// Suppression returns the suppression of recipient (compared normalised),
// or ErrNotFound. It is one Badger get.
func (e *Engine) Suppression(recipient string) (*Suppression, error) {
	r := event.NormalizeRecipient(recipient)
	var sp Suppression
	err := e.view(func(txn *badger.Txn) error {
		item, err := txn.Get(supPubKey(r))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%q is not suppressed: %w", r, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &sp) })
	})
	if err != nil {
		return nil, err
	}
	return &sp, nil
}

// ErrBadCursor is returned for a page cursor the engine did not make.
var ErrBadCursor = errors.New("bad cursor")

// Suppressions lists suppressed addresses in address order, those of one
// reason when reason is not empty, starting after the cursor (from an
// earlier page's next; "" starts at the beginning). next is "" on the last
// page.
func (e *Engine) Suppressions(reason, after string, limit int) (out []Suppression, next string, err error) {
	start := []byte{prefixSupPub}
	if after != "" {
		a, err := base64.RawURLEncoding.DecodeString(after)
		if err != nil {
			return nil, "", fmt.Errorf("cursor %q: %w", after, ErrBadCursor)
		}
		start = append(supPubKey(string(a)), 0) // the next key after it
	}
	out = []Suppression{}
	err = e.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(limit+1, 100), Prefix: []byte{prefixSupPub}})
		defer it.Close()
		for it.Seek(start); it.Valid(); it.Next() {
			var sp Suppression
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &sp) }); err != nil {
				return err
			}
			if reason != "" && sp.Reason != reason {
				continue
			}
			if len(out) == limit {
				next = base64.RawURLEncoding.EncodeToString([]byte(out[len(out)-1].Recipient))
				return nil
			}
			out = append(out, sp)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// ErrClosed is returned by Lift after Close.
var ErrClosed = errors.New("engine closed")

// LiftSuppression lifts recipient's suppression and returns what it was:
// the engine forgets the recipient's history up to the last event it has
// applied, records the lift in its journal and commits, all at once. It
// returns ErrNotFound when recipient is not suppressed. It may be called
// concurrently with Run.
func (e *Engine) LiftSuppression(recipient string) (*Suppression, uint64, error) {
	r := event.NormalizeRecipient(recipient)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, 0, ErrClosed
	}
	if e.replaying.Load() {
		return nil, 0, ErrReplayRunning
	}
	sp, err := e.Suppression(r)
	if err != nil {
		return nil, 0, err // committed state: what the client saw
	}
	seq := e.applied.Load() + uint64(e.pending)
	if err := e.liftState(r, seq); err != nil {
		return nil, 0, err
	}
	e.journal = append(e.journal, liftKey(seq, r))
	if err := e.commit(); err != nil {
		return nil, 0, err
	}
	return sp, seq, nil
}

// Lifts returns the lift journal in seq order.
func (e *Engine) Lifts() ([]Lift, error) {
	var out []Lift
	err := e.view(func(txn *badger.Txn) error {
		var err error
		out, err = readLifts(txn)
		return err
	})
	return out, err
}

// ReadLifts reads the lift journal of the state store in dir, which no
// engine may have open, without opening an engine on it: the journal's
// keys are the same in every format, so a rebuild carries it over from a
// store this build would refuse (a newer format) or would first migrate.
func ReadLifts(dir string) ([]Lift, error) {
	db, err := storage.OpenBadgerOptions(dir, stateBadgerOptions, nil)
	if err != nil {
		return nil, err
	}
	var out []Lift
	err = db.View(func(txn *badger.Txn) error {
		out, err = readLifts(txn)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return out, err
}

func readLifts(txn *badger.Txn) ([]Lift, error) {
	var out []Lift
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixLift}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) < 9 {
			return nil, fmt.Errorf("lift key: %w", errCorrupt)
		}
		out = append(out, Lift{Seq: binary.BigEndian.Uint64(k[1:9]), Recipient: string(k[9:])})
	}
	return out, nil
}

// ImportLifts adds journal entries (from Lifts of another state store, for
// a rebuild) and replays each when the engine reaches its seq. Call it
// before CatchUp, on a fresh store.
func (e *Engine) ImportLifts(ls []Lift) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.db.Update(func(txn *badger.Txn) error {
		for _, l := range ls {
			if err := txn.Set([]byte(liftKey(l.Seq, l.Recipient)), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import lifts: %w", err)
	}
	for _, l := range ls {
		if l.Seq > e.applied.Load() {
			e.liftQ = append(e.liftQ, l)
		}
	}
	sort.SliceStable(e.liftQ, func(i, j int) bool { return e.liftQ[i].Seq < e.liftQ[j].Seq })
	return nil
}

package engine

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
	"github.com/mailfunnel/mailfunnel/event"
)

// Bounce groups: every soft_bounce, hard_bounce and undelivered event is
// classified when applied (the stored event is not changed, so a better
// classifier can re-derive everything with a rebuild) and counted in one
// group per dimension, per campaign and over all campaigns (campaign id 0).
// Each group keeps event counts and first-reach recipient counts in
// event-time counters, so /v1/bounces answers any from/to exactly, like the
// funnel.
//
//	'G' uint32 BE cid, dim, key                      -> (empty) group registry
//	'g' uint32 BE cid, dim, kind, uvarint len, key   -> counter series (kind 'e' events, 'r' recipients)
//
// A recipient's first bounce time in each of its groups is kept in its
// recipient record ('r', see format.go).

// BounceDims are the dimensions /v1/bounces groups by.
var BounceDims = []string{"reason", "class", "status", "domain", "mx"}

const (
	prefixGroupReg   = 'G'
	prefixGroupCount = 'g'
	allCampaigns     = 0
	dimClass         = 2 // BounceDims[1]
)

func dimIndex(name string) (byte, bool) {
	for i, d := range BounceDims {
		if d == name {
			return byte(i + 1), true
		}
	}
	return 0, false
}

func groupSeries(cid uint32, dim, kind byte, key string) series {
	return series(appendGroupSeries(nil, cid, dim, kind, key))
}

func appendGroupSeries(dst []byte, cid uint32, dim, kind byte, key string) []byte {
	dst = append(dst, prefixGroupCount)
	dst = binary.BigEndian.AppendUint32(dst, cid)
	dst = append(dst, dim, kind)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	return append(dst, key...)
}

func groupRegKey(cid uint32, dim byte, key string) string {
	return string(appendGroupRegKey(nil, cid, dim, key))
}

func appendGroupRegKey(dst []byte, cid uint32, dim byte, key string) []byte {
	dst = append(dst, prefixGroupReg)
	dst = binary.BigEndian.AppendUint32(dst, cid)
	dst = append(dst, dim)
	return append(dst, key...)
}

// groupFirst is a recipient's first bounce time in one group. A recipient
// is in few groups (one reason, class, status, domain and MX per distinct
// reply), so one record per recipient holds them all: one state read and
// write per bounce instead of one per dimension.
type groupFirst struct {
	dim   byte
	key   string
	first int64
}

func encodeGroups(dst []byte, gs []groupFirst) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(gs)))
	for _, g := range gs {
		dst = append(dst, g.dim)
		dst = binary.AppendUvarint(dst, uint64(len(g.key)))
		dst = append(dst, g.key...)
		dst = binary.AppendVarint(dst, g.first)
	}
	return dst
}

func decodeGroups(v []byte) ([]groupFirst, error) {
	gs, n, err := decodeGroupsPrefix(v)
	if err == nil && n != len(v) {
		err = fmt.Errorf("bounce groups record length: %w", errCorrupt)
	}
	return gs, err
}

// decodeGroupsPrefix decodes the groups at the start of v and returns
// their encoded length.
func decodeGroupsPrefix(v []byte) ([]groupFirst, int, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || n > uint64(len(v)) {
		return nil, 0, fmt.Errorf("bounce groups record: %w", errCorrupt)
	}
	p := k
	gs := make([]groupFirst, 0, n)
	for i := uint64(0); i < n; i++ {
		if p >= len(v) {
			return nil, 0, fmt.Errorf("bounce groups record: %w", errCorrupt)
		}
		dim := v[p]
		p++
		l, k := binary.Uvarint(v[p:])
		if k <= 0 || l > uint64(len(v)-p-k) {
			return nil, 0, fmt.Errorf("bounce groups key: %w", errCorrupt)
		}
		p += k
		key := string(v[p : p+int(l)])
		p += int(l)
		first, k := binary.Varint(v[p:])
		if k <= 0 {
			return nil, 0, fmt.Errorf("bounce groups time: %w", errCorrupt)
		}
		p += k
		gs = append(gs, groupFirst{dim, key, first})
	}
	return gs, p, nil
}

// mxPattern finds the receiving host a reply names: SendPulse's
// "MX: mx23.i.ua", Postfix's "host mx.example.com[1.2.3.4] said".
var mxPattern = regexp.MustCompile(`(?i)(?:\bMX:\s*|\bhost\s+)([a-z0-9][a-z0-9.-]*\.[a-z]{2,})\b`)

// MXHost returns the receiving host named in an SMTP reply, lower-cased,
// or "".
func MXHost(text string) string {
	// Most replies name no host: skip the regexp for them.
	if !strings.Contains(text, "MX") && !strings.Contains(text, "mx") && !strings.Contains(text, "ost ") {
		return ""
	}
	if m := mxPattern.FindStringSubmatch(text); m != nil {
		return strings.ToLower(strings.TrimRight(m[1], "."))
	}
	return ""
}

// Classify returns the bounce class and reason of ev, the same the engine
// uses for its bounce groups and the exporter writes to Parquet; events
// that are not bounces get empty strings.
func Classify(ev *event.Event) (class, reason string) {
	if !ev.Type.IsBounce() {
		return "", ""
	}
	r := bounce.Classify(bounce.Input{Code: int(ev.SMTPCode), Status: ev.SMTPStatus, Text: ev.SMTPResponse, Label: ev.ProviderEvent})
	return string(r.Class), r.Reason
}

// applyBounce counts a bounce event in its groups.
// r is the event's classification. The class dimension's first-reach
// moves are mirrored in the recipient domain's class series.
// global and recip select the parts of the effect to apply (see apply):
// the event counts and registry, and the recipient's first bounces.
func (e *Engine) applyBounce(cid uint32, ev *event.Event, recipient string, t int64, r *bounce.Result, global, recip bool) error {
	status := r.Status
	if status == "" {
		status = "none"
	}
	domain := ev.RecipientDomain
	if domain == "" {
		domain = "none"
	}
	keys := [...]string{r.Reason, string(r.Class), status, domain, MXHost(ev.SMTPResponse)}
	for _, c := range [...]uint32{cid, allCampaigns} {
		var re *recEntry
		if recipient != "" && recip {
			e.kbuf = appendRecKey(e.kbuf[:0], c, recipient)
			var err error
			if re, err = e.recipient(e.kbuf); err != nil {
				return err
			}
		}
		var eb, rb [64]byte
		for i, key := range keys {
			if key == "" {
				continue // no MX named
			}
			dim := byte(i + 1)
			if global {
				// Looked up in a scratch buffer: a string is made only
				// for a new group, not at every bounce.
				if e.kbuf = appendGroupRegKey(e.kbuf[:0], c, dim, key); !e.groups[string(e.kbuf)] {
					rk := string(e.kbuf)
					e.groups[rk] = true
					e.dirtyGroups = append(e.dirtyGroups, rk)
				}
				if err := e.addCount(appendGroupSeries(eb[:0], c, dim, 'e', key), t, 1); err != nil {
					return err
				}
			}
			if re == nil {
				continue
			}
			j := 0
			for j < len(re.groups) && (re.groups[j].dim != dim || re.groups[j].key != key) {
				j++
			}
			rs := appendGroupSeries(rb[:0], c, dim, 'r', key)
			had := j < len(re.groups)
			var old int64
			if had {
				if old = re.groups[j].first; old <= t {
					continue
				}
				// An earlier bounce arrived late: move the first reach.
				if err := e.addCount(rs, old, -1); err != nil {
					return err
				}
				re.groups[j].first = t
			} else {
				re.groups = append(re.groups, groupFirst{dim, key, t})
			}
			if m, ok := classMetric(key); ok && dim == dimClass && c == allCampaigns {
				if err := e.moveDomain(c, domain, m, had, old, t); err != nil {
					return err
				}
			}
			if err := e.addCount(rs, t, 1); err != nil {
				return err
			}
			e.markDirty(re)
		}
	}
	return nil
}

// Group is one row of a bounce breakdown.
type Group struct {
	Key        string `json:"key"`
	Events     int64  `json:"events"`
	Recipients int64  `json:"recipients"`
}

// Bounces breaks a campaign's bounces (or, with ref nil, all campaigns')
// down by dim (one of BounceDims), counting events with event time in r and
// recipients whose first bounce in the group lies in r. Groups with nothing
// in r are omitted; the rest are ordered by events, then key.
func (e *Engine) Bounces(ref *CampaignRef, dim string, r Range) ([]Group, error) {
	d, ok := dimIndex(dim)
	if !ok {
		return nil, fmt.Errorf("unknown bounce dimension %q", dim)
	}
	out := []Group{}
	err := e.view(func(txn *badger.Txn) error {
		cid := uint32(allCampaigns)
		if ref != nil {
			c, err := resolve(txn, *ref)
			if err != nil {
				return err
			}
			cid = c.ID
		}
		prefix := []byte(groupRegKey(cid, d, ""))
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var keys []string
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, string(it.Item().Key()[len(prefix):]))
		}
		it.Close()
		for _, k := range keys {
			ev, err := countRange(txn, groupSeries(cid, d, 'e', k), r)
			if err != nil {
				return err
			}
			rc, err := countRange(txn, groupSeries(cid, d, 'r', k), r)
			if err != nil {
				return err
			}
			if ev != 0 || rc != 0 {
				out = append(out, Group{Key: k, Events: ev, Recipients: rc})
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Events != out[j].Events {
			return out[i].Events > out[j].Events
		}
		return out[i].Key < out[j].Key
	})
	return out, err
}

package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

const (
	keyCheckpoint = 'C'
	prefixCampKey = 'k'
	prefixCampRec = 'K'
	prefixRecip   = 'r'
	prefixCount   = 'n'

	levelTotal  = 'T'
	levelMinute = 'm'
	// levelOpen holds a minute's changes since its 'm' value was last
	// written (format 3, see countEntry).
	levelOpen = 'o'
)

var errCorrupt = errors.New("corrupt engine state")

// recState is one recipient's progress in one campaign: which metrics it has
// reached and the earliest event time (Unix micros) that reached each.
type recState struct {
	mask  uint16
	first [numRecipientMetrics]int64
}

func (s *recState) encode(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(s.mask))
	for m := metric(0); m < numRecipientMetrics; m++ {
		if s.mask&(1<<m) != 0 {
			dst = binary.AppendVarint(dst, s.first[m])
		}
	}
	return dst
}

// decodePrefix decodes the state at the start of b and returns its length.
func (s *recState) decodePrefix(b []byte) (int, error) {
	*s = recState{}
	mask, n := binary.Uvarint(b)
	if n <= 0 || mask >= 1<<numRecipientMetrics {
		return 0, fmt.Errorf("recipient state mask: %w", errCorrupt)
	}
	s.mask = uint16(mask)
	p := n
	for m := metric(0); m < numRecipientMetrics; m++ {
		if s.mask&(1<<m) == 0 {
			continue
		}
		v, n := binary.Varint(b[p:])
		if n <= 0 {
			return 0, fmt.Errorf("recipient state time %d: %w", m, errCorrupt)
		}
		s.first[m] = v
		p += n
	}
	return p, nil
}

func recKey(cid uint32, recipient string) string {
	return string(appendRecKey(nil, cid, recipient))
}

func appendRecKey(dst []byte, cid uint32, recipient string) []byte {
	dst = append(dst, prefixRecip)
	dst = binary.BigEndian.AppendUint32(dst, cid)
	return append(dst, recipient...)
}

// sortable maps an int64 to a uint64 whose big-endian bytes sort in the same
// order, so that negative (pre-1970) buckets sort before positive ones.
func sortable(v int64) uint64 { return uint64(v) ^ 1<<63 }

func unsortable(u uint64) int64 { return int64(u ^ 1<<63) }

// series is the key prefix of one counted quantity: a campaign metric
// ('n' cid metric) or a bounce group ('g' cid dim kind len key). Its
// counters follow as series + level + bucket.
type series string

func metricSeries(cid uint32, m metric) series {
	return series(appendMetricSeries(nil, cid, m))
}

func appendMetricSeries(dst []byte, cid uint32, m metric) []byte {
	dst = append(dst, prefixCount)
	dst = binary.BigEndian.AppendUint32(dst, cid)
	return append(dst, byte(m))
}

// countPrefix is the key prefix of a series' counters at one level.
func countPrefix(s series, level byte) []byte {
	b := make([]byte, 0, len(s)+9)
	b = append(b, s...)
	return append(b, level)
}

func countKey(s series, level byte, bucket int64) string {
	b := countPrefix(s, level)
	b = binary.BigEndian.AppendUint64(b, sortable(bucket))
	return string(b)
}

func campKey(source, campaign, account string) []byte {
	b := make([]byte, 0, 3+len(source)+len(campaign)+len(account))
	b = append(b, prefixCampKey)
	b = append(b, source...)
	b = append(b, 0)
	b = append(b, campaign...)
	b = append(b, 0)
	return append(b, account...)
}

func campRecKey(cid uint32) []byte {
	b := []byte{prefixCampRec, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], cid)
	return b
}

const microsPerMinute = 60_000_000

// subCount is the count of events at one microsecond offset within a minute.
type subCount struct {
	off int32
	n   int64
}

// countEntry is one counter: a plain count for the total level; for the
// minute level also the counts per microsecond offset within the minute,
// so that a range edge inside a minute is answered exactly without a key
// per event time. Second-precision data (SendPulse) has at most 60 offsets
// per minute.
//
// A minute of microsecond-dated events (emBlue) keeps an offset per
// distinct microsecond, tens of KB for a busy series, and a live commit
// every 20 ms rewrote it whole for the few offsets it gained: most of the
// engine's bytes written under single-event webhooks. So since format 3 a
// minute is stored in two keys: 'm', its value as of when it was last
// sealed, and 'o', the changes since (open), which the live mode rewrites
// at each commit while they are at most openMax offsets, then seals (writes
// 'm' whole, deletes 'o'). What the store says is 'm' plus 'o'; detail and
// n here are always the sum. Only a minute past openMax offsets is split
// (tracking): a smaller one, such as every minute of second-precision
// data, costs no more to rewrite whole, and is. Bulk mode writes whole.
type countEntry struct {
	key    string
	n      int64
	minute int64      // the bucket: minute level only
	detail []subCount // sorted by off; minute level only
	// open and openN are the changes since the seal, as stored in 'o'
	// when hasOpen; kept while tracking (live mode, minute level only).
	open     []subCount
	openN    int64
	hasOpen  bool
	tracking bool
	gen      uint32
	dirty    bool
}

// openMax is how many offsets a minute's open part may hold before a
// commit seals it: a busy emBlue series gains three or four offsets a
// commit, so its large sealed value is rewritten every 15-20 commits
// instead of every one.
const openMax = 64

// add counts d at offset off, and in the open part while tracking.
func (c *countEntry) add(off int32, d int64) {
	c.n += d
	c.detail = addSub(c.detail, off, d)
	if c.tracking {
		c.openN += d
		c.open = addSub(c.open, off, d)
	}
}

// addSub adds d at off to the sorted list l, dropping an entry that
// reaches zero.
func addSub(l []subCount, off int32, d int64) []subCount {
	// sort.Search by hand (its closure call per step showed in the
	// profile), with a first look at the end: a minute's events mostly
	// come in time order.
	i, j := 0, len(l)
	if j > 0 && l[j-1].off < off {
		i = j
	}
	for i < j {
		h := int(uint(i+j) >> 1)
		if l[h].off < off {
			i = h + 1
		} else {
			j = h
		}
	}
	switch {
	case i < len(l) && l[i].off == off:
		l[i].n += d
		if l[i].n == 0 {
			l = append(l[:i], l[i+1:]...)
		}
	default:
		l = append(l, subCount{})
		copy(l[i+1:], l[i:])
		l[i] = subCount{off, d}
	}
	return l
}

// mergeSubs returns the sum of the sorted lists a and b, without zeros.
func mergeSubs(a, b []subCount) []subCount {
	out := make([]subCount, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].off < b[j].off):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].off < a[i].off:
			out = append(out, b[j])
			j++
		default:
			if n := a[i].n + b[j].n; n != 0 {
				out = append(out, subCount{a[i].off, n})
			}
			i++
			j++
		}
	}
	return out
}

// encodeMinute appends a minute value (the 'm' and 'o' keys share it): a
// total, then the detail.
func encodeMinute(b []byte, n int64, detail []subCount) []byte {
	b = slices.Grow(b, 4+len(detail)*5)
	b = binary.AppendVarint(b, n)
	b = binary.AppendUvarint(b, uint64(len(detail)))
	for _, d := range detail {
		b = binary.AppendUvarint(b, uint64(d.off))
		b = binary.AppendVarint(b, d.n)
	}
	return b
}

// encode appends the counter's value to b.
func (c *countEntry) encode(b []byte, level byte) []byte {
	if level != levelMinute {
		return binary.BigEndian.AppendUint64(b, uint64(c.n))
	}
	return encodeMinute(b, c.n, c.detail)
}

func (c *countEntry) decode(level byte, v []byte) error {
	if level != levelMinute {
		if len(v) != 8 {
			return fmt.Errorf("counter: %w", errCorrupt)
		}
		c.n = int64(binary.BigEndian.Uint64(v))
		return nil
	}
	n, k := binary.Varint(v)
	if k <= 0 {
		return fmt.Errorf("minute counter: %w", errCorrupt)
	}
	c.n = n
	p := k
	cnt, k := binary.Uvarint(v[p:])
	if k <= 0 || cnt > uint64(len(v)) {
		return fmt.Errorf("minute counter detail: %w", errCorrupt)
	}
	p += k
	c.detail = make([]subCount, 0, cnt)
	for i := uint64(0); i < cnt; i++ {
		off, k := binary.Uvarint(v[p:])
		// Offsets are written in increasing order, once each; merging
		// a sealed value with its open part relies on it.
		if k <= 0 || off >= microsPerMinute || (i > 0 && int32(off) <= c.detail[i-1].off) {
			return fmt.Errorf("minute counter offset: %w", errCorrupt)
		}
		p += k
		d, k := binary.Varint(v[p:])
		if k <= 0 || d == 0 { // a count that reaches zero is dropped
			return fmt.Errorf("minute counter count: %w", errCorrupt)
		}
		p += k
		c.detail = append(c.detail, subCount{int32(off), d})
	}
	return nil
}

// decodeTotal reads only the total of a minute counter, for minutes a
// query covers whole.
func (c *countEntry) decodeTotal(v []byte) error {
	n, k := binary.Varint(v)
	if k <= 0 {
		return fmt.Errorf("minute counter: %w", errCorrupt)
	}
	c.n = n
	return nil
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

// floorDiv divides rounding toward negative infinity, so that pre-1970
// times fall in the right minute.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

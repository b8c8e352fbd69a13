package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

const (
	keyCheckpoint = 'C'
	prefixCampKey = 'k'
	prefixCampRec = 'K'
	prefixRecip   = 'r'
	prefixCount   = 'n'

	levelTotal  = 'T'
	levelMinute = 'm'
	levelMicro  = 'u'
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

func (s *recState) decode(b []byte) error {
	*s = recState{}
	mask, n := binary.Uvarint(b)
	if n <= 0 || mask >= 1<<numRecipientMetrics {
		return fmt.Errorf("recipient state mask: %w", errCorrupt)
	}
	s.mask = uint16(mask)
	p := n
	for m := metric(0); m < numRecipientMetrics; m++ {
		if s.mask&(1<<m) == 0 {
			continue
		}
		v, n := binary.Varint(b[p:])
		if n <= 0 {
			return fmt.Errorf("recipient state time %d: %w", m, errCorrupt)
		}
		s.first[m] = v
		p += n
	}
	if bits.OnesCount16(s.mask) > int(numRecipientMetrics) || p != len(b) {
		return fmt.Errorf("recipient state length: %w", errCorrupt)
	}
	return nil
}

func recKey(cid uint32, recipient string) string {
	b := make([]byte, 5, 5+len(recipient))
	b[0] = prefixRecip
	binary.BigEndian.PutUint32(b[1:], cid)
	return string(append(b, recipient...))
}

// sortable maps an int64 to a uint64 whose big-endian bytes sort in the same
// order, so that negative (pre-1970) buckets sort before positive ones.
func sortable(v int64) uint64 { return uint64(v) ^ 1<<63 }

func unsortable(u uint64) int64 { return int64(u ^ 1<<63) }

// countPrefix is the key prefix of one metric's counters at one level.
func countPrefix(cid uint32, m metric, level byte) []byte {
	b := make([]byte, 7, 15)
	b[0] = prefixCount
	binary.BigEndian.PutUint32(b[1:], cid)
	b[5] = byte(m)
	b[6] = level
	return b
}

func countKey(cid uint32, m metric, level byte, bucket int64) string {
	b := countPrefix(cid, m, level)
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

// floorDiv divides rounding toward negative infinity, so that pre-1970
// times fall in the right minute.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

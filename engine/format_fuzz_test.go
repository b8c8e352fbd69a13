package engine

import (
	"reflect"
	"testing"
)

// FuzzDecodeRecord: any bytes either fail to decode as a recipient record
// (with an error, never a panic) or decode to a record that encodes and
// decodes back to itself. Seeds: a per-campaign record, and an
// all-campaigns record with groups and a suppression state.
func FuzzDecodeRecord(f *testing.F) {
	re := &recEntry{key: recKey(allCampaigns, "a@b.c")}
	re.st.mask = 3
	re.st.first[0], re.st.first[1] = 5, -7
	re.groups = []groupFirst{{1, "user_unknown", 3}, {2, "hard", -1}}
	re.sup = &supState{liftSeq: 3, reason: 4, cause: supCause{t: 1, seq: 2, cid: 3, typ: 4, pevent: "soft_bounces", class: "soft", reason: "mailbox_full"},
		softs: []supCause{{t: 1, pevent: "soft_bounces"}}}
	f.Add(true, re.encodeRecord(re.key, nil))
	f.Add(false, re.encodeRecord(recKey(1, "a@b.c"), nil))
	f.Fuzz(func(t *testing.T, all bool, v []byte) {
		k := recKey(1, "a@b.c")
		if all {
			k = recKey(allCampaigns, "a@b.c")
		}
		var d recEntry
		if err := d.decodeRecord(k, v); err != nil {
			return
		}
		var d2 recEntry
		if err := d2.decodeRecord(k, d.encodeRecord(k, nil)); err != nil {
			t.Fatalf("a decoded record, encoded again, does not decode: %v", err)
		}
		if d.st != d2.st || !reflect.DeepEqual(d.groups, d2.groups) || !reflect.DeepEqual(d.sup, d2.sup) {
			t.Fatalf("round trip: %+v %+v %+v, then %+v %+v %+v", d.st, d.groups, d.sup, d2.st, d2.groups, d2.sup)
		}
	})
}

// FuzzMinuteValue: any bytes either fail to decode as a minute value (the
// 'm' and 'o' keys share it) or decode to one that encodes and decodes
// back to itself; and a sealed value plus an open part read as one (what
// scanCounts and the counter cache do) equals the two detail lists summed
// offset by offset.
func FuzzMinuteValue(f *testing.F) {
	f.Add(encodeMinute(nil, 3, []subCount{{1, 1}, {59_999_999, 2}}), encodeMinute(nil, -1, []subCount{{1, -1}, {7, 1}, {8, -1}}))
	f.Add(encodeMinute(nil, 0, nil), encodeMinute(nil, 2, []subCount{{0, 2}}))
	f.Fuzz(func(t *testing.T, sealed, open []byte) {
		var m, o countEntry
		if m.decode(levelMinute, sealed) != nil || o.decode(levelMinute, open) != nil {
			return
		}
		var m2 countEntry
		if err := m2.decode(levelMinute, encodeMinute(nil, m.n, m.detail)); err != nil {
			t.Fatalf("a decoded minute, encoded again, does not decode: %v", err)
		}
		if m2.n != m.n || !reflect.DeepEqual(m2.detail, m.detail) {
			t.Fatalf("round trip: %d %v, then %d %v", m.n, m.detail, m2.n, m2.detail)
		}
		sum := map[int32]int64{}
		for _, l := range [][]subCount{m.detail, o.detail} {
			for _, d := range l {
				sum[d.off] += d.n
			}
		}
		for _, d := range mergeSubs(m.detail, o.detail) {
			if d.n == 0 || d.n != sum[d.off] {
				t.Fatalf("merged %d at %d, want %d (zeros dropped)", d.n, d.off, sum[d.off])
			}
			delete(sum, d.off)
		}
		for off, n := range sum {
			if n != 0 {
				t.Fatalf("offset %d (sum %d) missing from the merge", off, n)
			}
		}
	})
}

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

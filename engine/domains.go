package engine

import (
	"encoding/binary"
	"sort"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/engine/bounce"
	"github.com/mailfunnel/mailfunnel/event"
)

// Per-domain deliverability: for each recipient domain, per campaign and
// over all campaigns (campaign id 0), the funnel's distinct-recipient counts
// (first reach, exactly like the funnel) plus recipients per bounce class.
// Any from/to is exact.
//
// Over all campaigns, a recipient has its own funnel record under campaign
// id 0 ('r' 0 recipient), which campaign ids never use (they start at 1),
// and every first-reach move of it is mirrored in counter series of its
// domain (a recipient's domain is a function of its normalised address, so
// it never changes). Bounce classes follow the bounce groups' class
// dimension, whose per-recipient first times the same record keeps.
//
// Per campaign, nothing extra is kept: the answer is computed when asked by
// scanning the campaign's recipient records ('r' cid), which hold every
// first-reach and first-bounce time. Keeping per-campaign domain series as well
// cost about four state writes per event (campaigns x domains x metrics
// rarely repeat within a transaction) and cut the engine's apply rate
// fivefold; a scan costs one pass over the campaign's recipients, per
// query, off the ingest path.
//
//	'D' uint32 BE cid, domain                       -> (empty) domain registry
//	'd' uint32 BE cid, metric, uvarint len, domain  -> counter series
const (
	prefixDomainReg   = 'D'
	prefixDomainCount = 'd'
)

// Domain metrics 0..numRecipientMetrics-1 are the funnel's recipient
// metrics; the bounce classes follow. Persisted in keys: append only.
const (
	mClassHard metric = 16 + iota
	mClassSoft
	mClassUndetermined
)

func classMetric(class string) (metric, bool) {
	switch bounce.Class(class) {
	case bounce.Hard:
		return mClassHard, true
	case bounce.Soft:
		return mClassSoft, true
	case bounce.Undetermined:
		return mClassUndetermined, true
	}
	return 0, false
}

// domainOf is the domain a recipient is counted under.
func domainOf(ev *event.Event) string {
	if ev.RecipientDomain == "" {
		return "none"
	}
	return ev.RecipientDomain
}

func domainSeries(cid uint32, m metric, domain string) series {
	return series(appendDomainSeries(nil, cid, m, domain))
}

func appendDomainSeries(dst []byte, cid uint32, m metric, domain string) []byte {
	dst = append(dst, prefixDomainCount)
	dst = binary.BigEndian.AppendUint32(dst, cid)
	dst = append(dst, byte(m))
	dst = binary.AppendUvarint(dst, uint64(len(domain)))
	return append(dst, domain...)
}

func domainRegKey(cid uint32, domain string) string {
	b := make([]byte, 5, 5+len(domain))
	b[0] = prefixDomainReg
	binary.BigEndian.PutUint32(b[1:], cid)
	return string(append(b, domain...))
}

// moveDomain mirrors one first-reach move of a recipient's bounce class
// (had: it had reached m before, at old; now it reaches m at t) in its
// domain's all-campaigns series.
func (e *Engine) moveDomain(cid uint32, domain string, m metric, had bool, old, t int64) error {
	var sb [64]byte
	s := appendDomainSeries(sb[:0], cid, m, domain)
	if had {
		if err := e.addCount(s, old, -1); err != nil {
			return err
		}
	}
	return e.addCount(s, t, 1)
}

// reachAll records the first reaches of metrics ms at t for recipient r over
// all campaigns, in its domain's all-campaigns series.
func (e *Engine) reachAll(r, domain string, ms []metric, t int64) error {
	e.kbuf = appendRecKey(e.kbuf[:0], allCampaigns, r)
	re, err := e.recipient(e.kbuf)
	if err != nil {
		return err
	}
	// Every funnel metric implies sent, so a recipient's first event
	// registers its domain.
	if re.st.mask&(1<<mSent) == 0 {
		e.registerDomain(domain)
	}
	return e.reach(re, ms, t, allCampaigns, domain)
}

func (e *Engine) registerDomain(domain string) {
	if k := domainRegKey(allCampaigns, domain); !e.groups[k] {
		e.groups[k] = true
		e.dirtyGroups = append(e.dirtyGroups, k)
	}
}

// BounceClasses are distinct recipients per bounce class.
type BounceClasses struct {
	Hard         int64 `json:"hard"`
	Soft         int64 `json:"soft"`
	Undetermined int64 `json:"undetermined"`
}

// DomainStats is one recipient domain's deliverability. Every count is of
// distinct recipients whose first reach lies in the query's range.
type DomainStats struct {
	Domain    string `json:"domain"`
	Sent      int64  `json:"sent"`
	Delivered int64  `json:"delivered"`
	Opened    int64  `json:"opened"`
	Clicked   int64  `json:"clicked"`
	// Bounced counts recipients by the classifier's class of their bounces
	// (a recipient with a soft and a hard bounce counts in both).
	Bounced BounceClasses `json:"bounced"`
	// SoftBounced, HardBounced and Undelivered count recipients by event
	// type, as the funnel's outcomes do; the bounce rate uses them.
	SoftBounced  int64              `json:"soft_bounced"`
	HardBounced  int64              `json:"hard_bounced"`
	Undelivered  int64              `json:"undelivered"`
	Complained   int64              `json:"complained"`
	Unsubscribed int64              `json:"unsubscribed"`
	Rates        map[string]float64 `json:"rates"`
}

// DomainRateNames are the keys of DomainStats.Rates.
var DomainRateNames = []string{"delivery", "open", "click", "bounce", "complaint", "unsubscribe"}

// Domains returns per-domain deliverability of one campaign or, with ref
// nil, of all campaigns, for recipients whose first reach of each count
// lies in r. Domains with nothing in r are omitted; the rest are ordered by
// sent (descending), then domain.
func (e *Engine) Domains(ref *CampaignRef, r Range) ([]DomainStats, error) {
	out := []DomainStats{}
	err := e.view(func(txn *badger.Txn) error {
		cid := uint32(allCampaigns)
		if ref != nil {
			c, err := resolve(txn, *ref)
			if err != nil {
				return err
			}
			stats, err := scanDomains(txn, c.ID, r)
			if err != nil {
				return err
			}
			for _, ds := range stats {
				ds.Rates = domainRates(ds)
				out = append(out, *ds)
			}
			return nil
		}
		prefix := []byte(domainRegKey(cid, ""))
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var domains []string
		for it.Rewind(); it.Valid(); it.Next() {
			domains = append(domains, string(it.Item().Key()[len(prefix):]))
		}
		it.Close()
		for _, d := range domains {
			ds := DomainStats{Domain: d}
			any := false
			for _, f := range []struct {
				m   metric
				dst *int64
			}{
				{mSent, &ds.Sent}, {mDelivered, &ds.Delivered}, {mOpened, &ds.Opened}, {mClicked, &ds.Clicked},
				{mSoft, &ds.SoftBounced}, {mHard, &ds.HardBounced}, {mUndelivered, &ds.Undelivered},
				{mUnsubscribed, &ds.Unsubscribed}, {mComplained, &ds.Complained},
				{mClassHard, &ds.Bounced.Hard}, {mClassSoft, &ds.Bounced.Soft}, {mClassUndetermined, &ds.Bounced.Undetermined},
			} {
				n, err := countRange(txn, domainSeries(cid, f.m, d), r)
				if err != nil {
					return err
				}
				*f.dst = n
				any = any || n != 0
			}
			if any {
				ds.Rates = domainRates(&ds)
				out = append(out, ds)
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sent != out[j].Sent {
			return out[i].Sent > out[j].Sent
		}
		return out[i].Domain < out[j].Domain
	})
	return out, err
}

// domainRates are the funnel's rates over one domain's counts.
func domainRates(d *DomainStats) map[string]float64 {
	return map[string]float64{
		"delivery":    ratio(d.Delivered, d.Sent),
		"open":        ratio(d.Opened, d.Delivered),
		"click":       ratio(d.Clicked, d.Delivered),
		"bounce":      ratio(d.SoftBounced+d.HardBounced+d.Undelivered, d.Sent),
		"complaint":   ratio(d.Complained, d.Delivered),
		"unsubscribe": ratio(d.Unsubscribed, d.Delivered),
	}
}

// scanDomains computes one campaign's per-domain counts from its recipient
// records.
func scanDomains(txn *badger.Txn, cid uint32, r Range) (map[string]*DomainStats, error) {
	from, to, _ := r.bounds()
	in := func(t int64) bool { return t >= from && t < to }
	stats := map[string]*DomainStats{}
	get := func(recipient string) *DomainStats {
		d := event.Domain(recipient)
		if d == "" {
			d = "none"
		}
		ds := stats[d]
		if ds == nil {
			ds = &DomainStats{Domain: d}
			stats[d] = ds
		}
		return ds
	}
	fields := func(ds *DomainStats) [numRecipientMetrics]*int64 {
		return [numRecipientMetrics]*int64{
			mSent: &ds.Sent, mDelivered: &ds.Delivered, mOpened: &ds.Opened, mClicked: &ds.Clicked,
			mSoft: &ds.SoftBounced, mHard: &ds.HardBounced, mUndelivered: &ds.Undelivered,
			mUnsubscribed: &ds.Unsubscribed, mComplained: &ds.Complained,
		}
	}
	prefix := []byte(recKey(cid, ""))
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: prefix})
	defer it.Close()
	var re recEntry
	for it.Rewind(); it.Valid(); it.Next() {
		re.key = string(it.Item().Key())
		if err := it.Item().Value(func(v []byte) error { return re.decodeRecord(re.key, v) }); err != nil {
			return nil, err
		}
		var ds *DomainStats
		for m := metric(0); m < numRecipientMetrics; m++ {
			if re.st.mask&(1<<m) != 0 && in(re.st.first[m]) {
				if ds == nil {
					ds = get(re.key[len(prefix):])
				}
				*fields(ds)[m]++
			}
		}
		for _, g := range re.groups {
			if g.dim != dimClass || !in(g.first) {
				continue
			}
			if ds == nil {
				ds = get(re.key[len(prefix):])
			}
			switch bounce.Class(g.key) {
			case bounce.Hard:
				ds.Bounced.Hard++
			case bounce.Soft:
				ds.Bounced.Soft++
			case bounce.Undetermined:
				ds.Bounced.Undetermined++
			}
		}
	}
	return stats, nil
}

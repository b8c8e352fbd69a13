package engine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/event"
)

// The read side. Every method reads the last committed state in one Badger
// read transaction, so an answer is a consistent snapshot at some
// checkpoint; none of them touches the apply-side caches.

// ErrNotFound is returned for a campaign the engine has not seen.
var ErrNotFound = errors.New("not found")

// AmbiguousError is returned when a campaign id exists under several
// accounts of a source and the query named none.
type AmbiguousError struct {
	Source, Campaign string
	Accounts         []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("campaign %q of source %q exists under several accounts (%s): pass account",
		e.Campaign, e.Source, strings.Join(e.Accounts, ", "))
}

// Range is an event-time interval [From, To). A zero bound is open.
type Range struct{ From, To time.Time }

func (r Range) bounds() (from, to int64, open bool) {
	from, to = minMicros, maxMicros
	if !r.From.IsZero() {
		from = r.From.UnixMicro()
	}
	if !r.To.IsZero() {
		to = r.To.UnixMicro()
	}
	return from, to, r.From.IsZero() && r.To.IsZero()
}

const (
	minMicros = -1 << 62
	maxMicros = 1 << 62
)

// CampaignRef names a campaign. Account may be empty: the campaign's only
// account is then used.
type CampaignRef struct{ Source, Account, Campaign string }

// Count is a distinct-recipient and an event count.
type Count struct {
	Recipients int64 `json:"recipients"`
	Events     int64 `json:"events"`
}

// Funnel is a campaign's funnel, as the contract's /v1/funnel shape.
type Funnel struct {
	Source   string             `json:"source"`
	Account  string             `json:"account"`
	Campaign string             `json:"campaign"`
	Stages   map[string]Count   `json:"stages"`
	Outcomes map[string]Count   `json:"outcomes"`
	Rates    map[string]float64 `json:"rates"`
	// LateEvents counts the campaign's events (in the range) that arrived
	// behind their source's watermark. They are counted like any other.
	LateEvents int64 `json:"late_events"`
}

// StageNames and OutcomeNames are the funnel's keys in display order.
var (
	StageNames   = []string{"sent", "delivered", "opened", "clicked"}
	OutcomeNames = []string{"soft_bounced", "hard_bounced", "undelivered", "unsubscribed", "complained"}
	RateNames    = []string{"delivery", "open", "click", "click_to_open", "bounce", "complaint", "unsubscribe"}
)

var funnelRows = []struct {
	name    string
	stage   bool
	metric  metric
	evtType event.Type
}{
	{"sent", true, mSent, event.Sent},
	{"delivered", true, mDelivered, event.Delivered},
	{"opened", true, mOpened, event.Opened},
	{"clicked", true, mClicked, event.Clicked},
	{"soft_bounced", false, mSoft, event.SoftBounce},
	{"hard_bounced", false, mHard, event.HardBounce},
	{"undelivered", false, mUndelivered, event.Undelivered},
	{"unsubscribed", false, mUnsubscribed, event.Unsubscribed},
	{"complained", false, mComplained, event.Complained},
}

// Funnel answers the contract's funnel query for one campaign.
func (e *Engine) Funnel(ref CampaignRef, r Range) (*Funnel, error) {
	f := &Funnel{Stages: map[string]Count{}, Outcomes: map[string]Count{}}
	err := e.view(func(txn *badger.Txn) error {
		c, err := resolve(txn, ref)
		if err != nil {
			return err
		}
		f.Source, f.Account, f.Campaign = c.Source, c.Account, c.Campaign
		for _, row := range funnelRows {
			rc, err := countRange(txn, metricSeries(c.ID, row.metric), r)
			if err != nil {
				return err
			}
			ec, err := countRange(txn, metricSeries(c.ID, eventMetric(row.evtType)), r)
			if err != nil {
				return err
			}
			if row.stage {
				f.Stages[row.name] = Count{rc, ec}
			} else {
				f.Outcomes[row.name] = Count{rc, ec}
			}
		}
		f.LateEvents, err = countRange(txn, metricSeries(c.ID, mLate), r)
		return err
	})
	if err != nil {
		return nil, err
	}
	s, o := f.Stages, f.Outcomes
	f.Rates = map[string]float64{
		"delivery":      ratio(s["delivered"].Recipients, s["sent"].Recipients),
		"open":          ratio(s["opened"].Recipients, s["delivered"].Recipients),
		"click":         ratio(s["clicked"].Recipients, s["delivered"].Recipients),
		"click_to_open": ratio(s["clicked"].Recipients, s["opened"].Recipients),
		"bounce":        ratio(o["soft_bounced"].Recipients+o["hard_bounced"].Recipients+o["undelivered"].Recipients, s["sent"].Recipients),
		"complaint":     ratio(o["complained"].Recipients, s["delivered"].Recipients),
		"unsubscribe":   ratio(o["unsubscribed"].Recipients, s["delivered"].Recipients),
	}
	return f, nil
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// resolve finds the campaign record for ref within txn.
func resolve(txn *badger.Txn, ref CampaignRef) (*campaign, error) {
	var id uint32
	if ref.Account != "" {
		item, err := txn.Get(campKey(ref.Source, ref.Campaign, ref.Account))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("campaign %q of source %q and account %q: %w", ref.Campaign, ref.Source, ref.Account, ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if err := item.Value(func(v []byte) error { id = binary.BigEndian.Uint32(v); return nil }); err != nil {
			return nil, err
		}
	} else {
		prefix := campKey(ref.Source, ref.Campaign, "")
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: prefix})
		var accounts []string
		for it.Rewind(); it.Valid(); it.Next() {
			accounts = append(accounts, string(it.Item().Key()[len(prefix):]))
			if err := it.Item().Value(func(v []byte) error { id = binary.BigEndian.Uint32(v); return nil }); err != nil {
				it.Close()
				return nil, err
			}
		}
		it.Close()
		switch len(accounts) {
		case 0:
			return nil, fmt.Errorf("campaign %q of source %q: %w", ref.Campaign, ref.Source, ErrNotFound)
		case 1:
		default:
			return nil, &AmbiguousError{Source: ref.Source, Campaign: ref.Campaign, Accounts: accounts}
		}
	}
	item, err := txn.Get(campRecKey(id))
	if err != nil {
		return nil, fmt.Errorf("read campaign %d: %w", id, err)
	}
	c := &campaign{}
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, c) }); err != nil {
		return nil, err
	}
	return c, nil
}

// countRange returns metric m's count over r: the total when r is open,
// else the sum of scanCounts.
func countRange(txn *badger.Txn, s series, r Range) (int64, error) {
	from, to, open := r.bounds()
	if open {
		return getInt(txn, []byte(countKey(s, levelTotal, 0)))
	}
	var n int64
	err := scanCounts(txn, s, from, to, func(_, c int64) { n += c })
	return n, err
}

// scanCounts calls fn(t, n) for counts of series s whose times lie in
// [lo, hi), exactly: a minute inside the range reports its total (t is the
// minute's start); a minute cut by an edge reports its events per exact
// microsecond. Each call's t lies inside one minute, so callers can assign
// it to any window of whole minutes. A minute is its sealed value ('m')
// plus its open part ('o'; see countEntry); counts that sum to zero are
// not reported, as a rebuilt store (sealed only) would not hold them.
func scanCounts(txn *badger.Txn, s series, lo, hi int64, fn func(t, n int64)) error {
	if lo >= hi {
		return nil
	}
	lm, hm := floorDiv(lo, microsPerMinute), ceilDiv(hi, microsPerMinute)
	// The open parts are few: the minutes changed since their last seal.
	var opens []countEntry
	err := scanRange(txn, s, levelOpen, lm, hm, func(b []byte, minute int64) error {
		o := countEntry{minute: minute}
		if err := o.decode(levelMinute, b); err != nil {
			return err
		}
		opens = append(opens, o)
		return nil
	})
	if err != nil {
		return err
	}
	report := func(minute int64, sealed []byte, open *countEntry) error {
		start := minute * microsPerMinute
		var ce countEntry
		if start >= lo && start+microsPerMinute <= hi {
			if sealed != nil {
				if err := ce.decodeTotal(sealed); err != nil {
					return err
				}
			}
			if open != nil {
				ce.n += open.n
			}
			if ce.n != 0 {
				fn(start, ce.n)
			}
			return nil
		}
		if sealed != nil {
			if err := ce.decode(levelMinute, sealed); err != nil {
				return err
			}
		}
		if open != nil {
			ce.detail = mergeSubs(ce.detail, open.detail)
		}
		for _, d := range ce.detail {
			if t := start + int64(d.off); t >= lo && t < hi && d.n != 0 {
				fn(t, d.n)
			}
		}
		return nil
	}
	i := 0
	err = scanRange(txn, s, levelMinute, lm, hm, func(b []byte, minute int64) error {
		for ; i < len(opens) && opens[i].minute < minute; i++ {
			if err := report(opens[i].minute, nil, &opens[i]); err != nil {
				return err
			}
		}
		var open *countEntry
		if i < len(opens) && opens[i].minute == minute {
			open = &opens[i]
			i++
		}
		return report(minute, b, open)
	})
	if err != nil {
		return err
	}
	for ; i < len(opens); i++ {
		if err := report(opens[i].minute, nil, &opens[i]); err != nil {
			return err
		}
	}
	return nil
}

// scanRange calls fn with the value and bucket of each counter of one level
// with bucket in [lo, hi).
func scanRange(txn *badger.Txn, s series, level byte, lo, hi int64, fn func(v []byte, bucket int64) error) error {
	prefix := countPrefix(s, level)
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
	defer it.Close()
	start := binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), sortable(lo))
	for it.Seek(start); it.Valid(); it.Next() {
		k := it.Item().Key()
		b := unsortable(binary.BigEndian.Uint64(k[len(prefix):]))
		if b >= hi {
			break
		}
		if err := it.Item().Value(func(v []byte) error { return fn(v, b) }); err != nil {
			return err
		}
	}
	return nil
}

// CampaignInfo is one row of the campaign catalogue.
type CampaignInfo struct {
	Source     string    `json:"source"`
	Account    string    `json:"account"`
	Campaign   string    `json:"campaign"`
	FirstEvent time.Time `json:"first_event"`
	LastEvent  time.Time `json:"last_event"`
	Events     int64     `json:"events"`
}

// Campaigns lists the campaigns seen, optionally of one source, ordered by
// source, account and campaign.
func (e *Engine) Campaigns(source string) ([]CampaignInfo, error) {
	out := []CampaignInfo{}
	err := e.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{prefixCampRec}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var c campaign
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
				return err
			}
			if source != "" && c.Source != source {
				continue
			}
			out = append(out, CampaignInfo{
				Source: c.Source, Account: c.Account, Campaign: c.Campaign,
				FirstEvent: time.UnixMicro(c.First).UTC(), LastEvent: time.UnixMicro(c.Last).UTC(), Events: c.Events,
			})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.Account != b.Account {
			return a.Account < b.Account
		}
		return a.Campaign < b.Campaign
	})
	return out, err
}

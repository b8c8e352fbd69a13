package engine_test

import (
	"sort"
	"strings"
	"time"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/engine/bounce"
	"github.com/mailfunnel/mailfunnel/event"
)

func inRange(r engine.Range, t time.Time) bool {
	return (r.From.IsZero() || !t.Before(r.From)) && (r.To.IsZero() || t.Before(r.To))
}

func classOf(e *event.Event) bounce.Result {
	return bounce.Classify(bounce.Input{Code: int(e.SMTPCode), Status: e.SMTPStatus, Text: e.SMTPResponse, Label: e.ProviderEvent})
}

// naiveDomains recomputes /v1/domains: per domain, distinct recipients by
// the earliest event time that brought them to each stage, outcome and
// bounce class, over one campaign or (ref nil) all.
func naiveDomains(events []event.Event, ref *engine.CampaignRef, r engine.Range) []engine.DomainStats {
	stageOf := map[event.Type][]string{
		event.Sent: {"sent"}, event.Delivered: {"sent", "delivered"},
		event.Opened: {"sent", "delivered", "opened"}, event.Clicked: {"sent", "delivered", "opened", "clicked"},
		event.SoftBounce: {"sent", "soft_bounced"}, event.HardBounce: {"sent", "hard_bounced"},
		event.Undelivered: {"sent", "undelivered"}, event.Unsubscribed: {"sent", "unsubscribed"},
		event.Complained: {"sent", "complained"},
	}
	type key struct{ domain, metric, rec string }
	first := map[key]time.Time{}
	reach := func(k key, t time.Time) {
		if old, ok := first[k]; !ok || t.Before(old) {
			first[k] = t
		}
	}
	for _, e := range events {
		if ref != nil && (e.Source != ref.Source || e.Account != ref.Account || e.Campaign != ref.Campaign) {
			continue
		}
		rec := strings.ToLower(strings.TrimSpace(e.Recipient))
		if rec == "" {
			continue
		}
		d := e.RecipientDomain
		if d == "" {
			d = "none"
		}
		for _, st := range stageOf[e.Type] {
			reach(key{d, st, rec}, e.EventTime)
		}
		if e.Type.IsBounce() {
			reach(key{d, "class_" + string(classOf(&e).Class), rec}, e.EventTime)
		}
	}
	rows := map[string]*engine.DomainStats{}
	for k, t := range first {
		if !inRange(r, t) {
			continue
		}
		ds := rows[k.domain]
		if ds == nil {
			ds = &engine.DomainStats{Domain: k.domain}
			rows[k.domain] = ds
		}
		*map[string]*int64{
			"sent": &ds.Sent, "delivered": &ds.Delivered, "opened": &ds.Opened, "clicked": &ds.Clicked,
			"soft_bounced": &ds.SoftBounced, "hard_bounced": &ds.HardBounced, "undelivered": &ds.Undelivered,
			"unsubscribed": &ds.Unsubscribed, "complained": &ds.Complained,
			"class_hard": &ds.Bounced.Hard, "class_soft": &ds.Bounced.Soft, "class_undetermined": &ds.Bounced.Undetermined,
		}[k.metric]++
	}
	rate := func(a, b int64) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	out := []engine.DomainStats{}
	for _, ds := range rows {
		ds.Rates = map[string]float64{
			"delivery": rate(ds.Delivered, ds.Sent), "open": rate(ds.Opened, ds.Delivered),
			"click": rate(ds.Clicked, ds.Delivered), "bounce": rate(ds.SoftBounced+ds.HardBounced+ds.Undelivered, ds.Sent),
			"complaint": rate(ds.Complained, ds.Delivered), "unsubscribe": rate(ds.Unsubscribed, ds.Delivered),
		}
		out = append(out, *ds)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sent != out[j].Sent {
			return out[i].Sent > out[j].Sent
		}
		return out[i].Domain < out[j].Domain
	})
	return out
}

// naiveSuppressions recomputes the suppression list from scratch: per
// recipient, only events after its last lift count; the cause is the
// earliest candidate in (event time, seq) order among hard bounces (by the
// classifier's class), complaints, unsubscribes and the bounce completing
// the earliest window of n soft or undetermined bounces within w.
func naiveSuppressions(events []event.Event, lifts []engine.Lift, n int, w time.Duration) []engine.Suppression {
	lastLift := map[string]uint64{}
	for _, l := range lifts {
		lastLift[l.Recipient] = max(lastLift[l.Recipient], l.Seq)
	}
	type cand struct {
		e      event.Event
		reason string
	}
	byRec := map[string][]cand{}
	softs := map[string][]event.Event{}
	for _, e := range events {
		rec := strings.ToLower(strings.TrimSpace(e.Recipient))
		if rec == "" || e.Seq <= lastLift[rec] {
			continue
		}
		switch {
		case e.Type == event.Complained:
			byRec[rec] = append(byRec[rec], cand{e, engine.ReasonComplaint})
		case e.Type == event.Unsubscribed:
			byRec[rec] = append(byRec[rec], cand{e, engine.ReasonUnsubscribe})
		case e.Type.IsBounce() && classOf(&e).Class == bounce.Hard:
			byRec[rec] = append(byRec[rec], cand{e, engine.ReasonHardBounce})
		case e.Type.IsBounce():
			softs[rec] = append(softs[rec], e)
		}
	}
	less := func(a, b *event.Event) bool {
		return a.EventTime.Before(b.EventTime) || a.EventTime.Equal(b.EventTime) && a.Seq < b.Seq
	}
	for rec, ss := range softs {
		sort.Slice(ss, func(i, j int) bool { return less(&ss[i], &ss[j]) })
		for i := n - 1; i < len(ss); i++ {
			if ss[i].EventTime.Sub(ss[i-n+1].EventTime) < w {
				byRec[rec] = append(byRec[rec], cand{ss[i], engine.ReasonSoftBounces})
				break
			}
		}
	}
	out := []engine.Suppression{}
	for rec, cs := range byRec {
		best := cs[0]
		for _, c := range cs[1:] {
			if less(&c.e, &best.e) {
				best = c
			}
		}
		e := best.e
		sp := engine.Suppression{Recipient: rec, Reason: best.reason, SuppressedAt: e.EventTime.UTC(),
			Event: engine.SuppressionEvent{Seq: e.Seq, Source: e.Source, Account: e.Account, Campaign: e.Campaign,
				ProviderEvent: e.ProviderEvent, Type: e.Type.String(), EventTime: e.EventTime.UTC()}}
		if e.Type.IsBounce() {
			res := classOf(&e)
			sp.Event.BounceClass, sp.Event.BounceReason = string(res.Class), res.Reason
		}
		out = append(out, sp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Recipient < out[j].Recipient })
	return out
}

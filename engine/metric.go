package engine

import "github.com/mailfunnel/mailfunnel/event"

// metric numbers one counted quantity of a campaign. Recipient metrics count
// distinct recipients by first reach; event metrics count events per type.
// The values are persisted in keys: append, never renumber.
type metric uint8

const (
	mSent metric = iota
	mDelivered
	mOpened
	mClicked
	mSoft
	mHard
	mUndelivered
	mUnsubscribed
	mComplained
	numRecipientMetrics
)

// eventMetric is the event-count metric of type t.
func eventMetric(t event.Type) metric { return 32 + metric(t) }

// implied returns the recipient metrics an event of type t reaches.
func implied(t event.Type) []metric {
	switch t {
	case event.Sent:
		return []metric{mSent}
	case event.Delivered:
		return []metric{mSent, mDelivered}
	case event.Opened:
		return []metric{mSent, mDelivered, mOpened}
	case event.Clicked:
		return []metric{mSent, mDelivered, mOpened, mClicked}
	case event.SoftBounce:
		return []metric{mSent, mSoft}
	case event.HardBounce:
		return []metric{mSent, mHard}
	case event.Undelivered:
		return []metric{mSent, mUndelivered}
	case event.Unsubscribed:
		return []metric{mSent, mUnsubscribed}
	case event.Complained:
		return []metric{mSent, mComplained}
	}
	return nil // subscribed, other: in no funnel
}

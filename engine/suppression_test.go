package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// TestSuppressionRules checks the rules one case at a time. A step appends
// events (minutes after base) or lifts an address; want maps addresses to
// their reason and the causing event's minute, and omits the others.
func TestSuppressionRules(t *testing.T) {
	const (
		userUnknown = "550 5.1.1 <x@d.com>: Recipient address rejected: User unknown"
		mailboxFull = "552 5.2.2 Mailbox full"
		blocked     = "554 5.7.1 Service unavailable; Client host [1.2.3.4] blocked using zen.spamhaus.org"
	)
	type ev struct {
		typ    event.Type
		rcpt   string
		minute int
		text   string // bounce reply
	}
	type step struct {
		events []ev
		lift   string
	}
	type want struct {
		reason string
		minute int
	}
	day := 24 * 60
	cases := []struct {
		name      string
		softCount int // 0: default 3
		window    time.Duration
		steps     []step
		want      map[string]want
	}{
		{name: "hard by class, not by label", steps: []step{{events: []ev{
			{event.SoftBounce, "a@d.com", 5, userUnknown}, // provider says soft, the reply says the address does not exist
			{event.HardBounce, "b@d.com", 5, mailboxFull}, // provider says hard, the mailbox is full: soft
		}}}, want: map[string]want{"a@d.com": {engine.ReasonHardBounce, 5}}},
		{name: "complaint and unsubscribe", steps: []step{{events: []ev{
			{event.Complained, "a@d.com", 1, ""}, {event.Unsubscribed, "B@D.com ", 2, ""}, {event.Opened, "c@d.com", 3, ""},
		}}}, want: map[string]want{"a@d.com": {engine.ReasonComplaint, 1}, "b@d.com": {engine.ReasonUnsubscribe, 2}}},
		{name: "three soft bounces within the window, out of order", steps: []step{{events: []ev{
			{event.SoftBounce, "a@d.com", 6 * day, mailboxFull},
			{event.SoftBounce, "a@d.com", 0, blocked},
			{event.Undelivered, "a@d.com", 3 * day, ""}, // undetermined counts like soft
			{event.SoftBounce, "b@d.com", 0, mailboxFull},
			{event.SoftBounce, "b@d.com", 4 * day, mailboxFull},
			{event.SoftBounce, "b@d.com", 8 * day, mailboxFull}, // 8 days from the first: not within 7
		}}}, want: map[string]want{"a@d.com": {engine.ReasonSoftBounces, 6 * day}}},
		{name: "custom count and window", softCount: 2, window: time.Hour, steps: []step{{events: []ev{
			{event.SoftBounce, "a@d.com", 0, mailboxFull}, {event.SoftBounce, "a@d.com", 59, mailboxFull},
			{event.SoftBounce, "b@d.com", 0, mailboxFull}, {event.SoftBounce, "b@d.com", 60, mailboxFull},
		}}}, want: map[string]want{"a@d.com": {engine.ReasonSoftBounces, 59}}},
		{name: "soft rule off", softCount: -1, steps: []step{{events: []ev{
			{event.SoftBounce, "a@d.com", 0, mailboxFull}, {event.SoftBounce, "a@d.com", 1, mailboxFull},
			{event.SoftBounce, "a@d.com", 2, mailboxFull}, {event.SoftBounce, "a@d.com", 3, mailboxFull},
		}}}, want: map[string]want{}},
		{name: "a late earlier event becomes the cause", steps: []step{
			{events: []ev{{event.Unsubscribed, "a@d.com", 10, ""}}},
			{events: []ev{{event.HardBounce, "a@d.com", 4, userUnknown}, {event.Complained, "a@d.com", 7, ""}}},
		}, want: map[string]want{"a@d.com": {engine.ReasonHardBounce, 4}}},
		{name: "a late bounce completes an earlier window", steps: []step{
			{events: []ev{{event.Complained, "a@d.com", 100, ""}, {event.SoftBounce, "a@d.com", 10, mailboxFull}, {event.SoftBounce, "a@d.com", 30, mailboxFull}}},
			{events: []ev{{event.SoftBounce, "a@d.com", 20, blocked}}},
		}, want: map[string]want{"a@d.com": {engine.ReasonSoftBounces, 30}}},
		{name: "lift, then only later events count", steps: []step{
			{events: []ev{{event.HardBounce, "a@d.com", 10, userUnknown}, {event.SoftBounce, "a@d.com", 1, mailboxFull}, {event.SoftBounce, "a@d.com", 2, mailboxFull}}},
			{lift: " A@D.COM"},
			{events: []ev{{event.SoftBounce, "a@d.com", 3, mailboxFull}, {event.SoftBounce, "a@d.com", 4, mailboxFull}}},
		}, want: map[string]want{}},
		{name: "lift, then suppressed again", steps: []step{
			{events: []ev{{event.Complained, "a@d.com", 10, ""}}},
			{lift: "a@d.com"},
			{events: []ev{{event.SoftBounce, "a@d.com", 3, mailboxFull}, {event.SoftBounce, "a@d.com", 4, mailboxFull}, {event.SoftBounce, "a@d.com", 5, mailboxFull}}},
			{events: []ev{{event.Unsubscribed, "a@d.com", 1, ""}}},
		}, want: map[string]want{"a@d.com": {engine.ReasonUnsubscribe, 1}}},
		{name: "lift twice", steps: []step{
			{events: []ev{{event.Complained, "a@d.com", 10, ""}}},
			{lift: "a@d.com"},
			{events: []ev{{event.Unsubscribed, "a@d.com", 11, ""}}},
			{lift: "a@d.com"},
			{events: []ev{{event.Opened, "a@d.com", 12, ""}}},
		}, want: map[string]want{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := storagetest.New(t)
			cfg := engine.Config{Dir: t.TempDir(), SuppressSoftCount: tc.softCount, SuppressSoftWindow: tc.window}
			eng, err := engine.Open(cfg, l)
			require.NoError(t, err)
			defer eng.Close()
			n := 0
			for _, st := range tc.steps {
				if st.lift != "" {
					_, _, err := eng.LiftSuppression(st.lift)
					require.NoError(t, err)
					_, err = eng.Suppression(st.lift)
					require.ErrorIs(t, err, engine.ErrNotFound)
					_, _, err = eng.LiftSuppression(st.lift)
					require.ErrorIs(t, err, engine.ErrNotFound, "a second lift finds nothing")
					continue
				}
				var evs []event.Event
				for _, e := range st.events {
					n++
					x := event.Event{Source: "sp", Provider: "sendpulse", ProviderEvent: e.typ.String(), Type: e.typ,
						Account: "a1", Campaign: "c1", Recipient: e.rcpt, RecipientDomain: event.Domain(e.rcpt),
						EventTime: base.Add(time.Duration(e.minute) * time.Minute), ReceivedTime: base, MessageID: fmt.Sprint(n)}
					if e.typ.IsBounce() && e.text != "" {
						x.SMTPResponse = e.text
					}
					evs = append(evs, x)
				}
				_, err := l.AppendCtx(evs...)
				require.NoError(t, err)
				require.NoError(t, eng.CatchUp(context.Background(), nil))
			}
			got := map[string]want{}
			all, _, err := eng.Suppressions("", "", 100)
			require.NoError(t, err)
			for _, sp := range all {
				got[sp.Recipient] = want{sp.Reason, int(sp.SuppressedAt.Sub(base) / time.Minute)}
				require.Equal(t, sp.SuppressedAt, sp.Event.EventTime)
				one, err := eng.Suppression(" " + sp.Recipient + "\t")
				require.NoError(t, err)
				require.Equal(t, sp, *one)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestSuppressionCause(t *testing.T) {
	l := storagetest.New(t)
	_, err := l.AppendCtx(event.Event{Source: "sp", Provider: "sendpulse", ProviderEvent: "hard_bounces", Type: event.HardBounce,
		Account: "acc", Campaign: "17076325", Recipient: "Vch15@I.ua", RecipientDomain: "i.ua", EventTime: base, ReceivedTime: base,
		SMTPCode: 550, SMTPStatus: "5.1.1", SMTPResponse: "vch15@i.ua MX: mx23.i.ua RESP: 5.1.1 User unknown"})
	require.NoError(t, err)
	eng, err := engine.Open(engine.DefaultConfig(t.TempDir()), l)
	require.NoError(t, err)
	defer eng.Close()
	require.NoError(t, eng.CatchUp(context.Background(), nil))
	sp, err := eng.Suppression("VCH15@i.ua")
	require.NoError(t, err)
	require.Equal(t, engine.Suppression{Recipient: "vch15@i.ua", Reason: engine.ReasonHardBounce, SuppressedAt: base,
		Event: engine.SuppressionEvent{Seq: 1, Source: "sp", Account: "acc", Campaign: "17076325", ProviderEvent: "hard_bounces",
			Type: "hard_bounce", EventTime: base, BounceClass: "hard", BounceReason: "user_unknown"}}, *sp)
	_, err = eng.Suppression("nobody@i.ua")
	require.ErrorIs(t, err, engine.ErrNotFound)
	_, _, err = eng.Suppressions("", "!!", 10)
	require.ErrorIs(t, err, engine.ErrBadCursor)
}

package export_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/storage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var baseTime = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

var bounceTexts = []struct {
	code   int32
	status string
	text   string
}{
	{550, "5.1.1", "550 5.1.1 <%s>: Recipient address rejected: User unknown"},
	{452, "4.2.2", "452 4.2.2 Mailbox full"},
	{554, "5.7.1", "554 5.7.1 Service unavailable; client host blocked"},
}

// genEvents returns n realistic events: a handful of campaigns over two
// sources, recipients that go through the funnel, event times spread over
// `hours` hours (not in seq order), some bounces with SMTP replies.
func genEvents(seed uint64, n, hours int) []event.Event {
	r := rand.New(rand.NewPCG(seed, 7))
	types := []event.Type{event.Sent, event.Sent, event.Delivered, event.Delivered, event.Opened, event.Opened,
		event.Clicked, event.SoftBounce, event.HardBounce, event.Undelivered, event.Unsubscribed, event.Complained, event.Other}
	domains := []string{"gmail.com", "yahoo.com", "hotmail.com", "example.org", "mail.ru", "outlook.com"}
	out := make([]event.Event, n)
	for i := range out {
		provider := "sendpulse"
		if r.IntN(3) == 0 {
			provider = "emblue"
		}
		camp := r.IntN(20)
		typ := types[r.IntN(len(types))]
		rcpt := fmt.Sprintf("user%d@%s", r.IntN(50_000), domains[r.IntN(len(domains))])
		et := baseTime.Add(time.Duration(r.Int64N(int64(hours) * int64(time.Hour)))).Truncate(time.Microsecond)
		e := event.Event{
			Source: provider, Provider: provider, ProviderEvent: typ.String(), Account: provider + "-acct",
			Campaign: fmt.Sprintf("%d", 17076300+camp), MessageID: fmt.Sprintf("<%x@mta.example.net>", r.Uint64()),
			Recipient: rcpt, RecipientDomain: event.Domain(rcpt), Type: typ,
			EventTime: et, ReceivedTime: et.Add(time.Duration(r.IntN(5000)) * time.Millisecond),
			Subject: fmt.Sprintf("Black Friday offer %d", camp), Sender: "news@shop.example.com",
		}
		if provider == "emblue" {
			e.SendType = fmt.Sprint(1 + camp%3)
		}
		if typ == event.Clicked {
			e.URL = fmt.Sprintf("https://shop.example.com/p/%d", r.IntN(10))
		}
		if typ.IsBounce() {
			b := bounceTexts[r.IntN(len(bounceTexts))]
			e.SMTPCode, e.SMTPStatus, e.SMTPResponse = b.code, b.status, fmt.Sprintf(b.text, rcpt)
		}
		if typ == event.Other {
			e.ProviderEvent = "new_emails"
		}
		out[i] = e
	}
	return out
}

// appendEvents appends evs to l in batches and returns them with Seq set.
func appendEvents(tb testing.TB, l *storage.Log, evs []event.Event) []event.Event {
	tb.Helper()
	for i := 0; i < len(evs); i += 10_000 {
		j := min(i+10_000, len(evs))
		_, err := l.AppendCtx(evs[i:j]...)
		require.NoError(tb, err)
	}
	var out []event.Event
	require.NoError(tb, l.ReadFrom(tb.Context(), 1, func(e *event.Event) error {
		out = append(out, *e)
		return nil
	}))
	require.Len(tb, out, int(l.LastSeq()))
	return out
}

// fakeClassify stands in for engine/bounce.
func fakeClassify(e *event.Event) {
	switch {
	case strings.HasPrefix(e.SMTPStatus, "5.1."):
		e.BounceClass, e.BounceReason = "hard", "user_unknown"
	case e.SMTPStatus == "4.2.2":
		e.BounceClass, e.BounceReason = "soft", "mailbox_full"
	default:
		e.BounceClass, e.BounceReason = "undetermined", "blocked"
	}
}

// openParquet opens the Parquet file at path, closed when the test ends.
func openParquet(t *testing.T, path string) *parquet.File {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	require.NoError(t, err)
	pf, err := parquet.OpenFile(f, st.Size())
	require.NoError(t, err)
	return pf
}

// parquetFiles lists the visible .parquet files under dir/sub, relative to dir.
func parquetFiles(t *testing.T, dir, sub string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".parquet") && !strings.HasPrefix(d.Name(), ".") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// readEvents reads every events file under dir and returns the rows by
// file.
func readEvents(t *testing.T, dir string) map[string][]export.EventRow {
	t.Helper()
	out := map[string][]export.EventRow{}
	for _, p := range parquetFiles(t, dir, "events") {
		rows, err := parquet.ReadFile[export.EventRow](filepath.Join(dir, p))
		require.NoError(t, err, p)
		out[p] = rows
	}
	return out
}

// requireExactlyOnce checks that the events files hold seqs 1..n each once,
// and that the manifest lists exactly the visible files.
func requireExactlyOnce(t *testing.T, x *export.Exporter, dir string, n int) {
	t.Helper()
	seen := make([]int, n+1)
	for p, rows := range readEvents(t, dir) {
		for _, r := range rows {
			require.True(t, r.Seq >= 1 && r.Seq <= int64(n), "%s: seq %d out of range", p, r.Seq)
			seen[r.Seq]++
		}
	}
	for s := 1; s <= n; s++ {
		require.Equal(t, 1, seen[s], "seq %d exported %d times", s, seen[s])
	}
	files, err := x.Files()
	require.NoError(t, err)
	var listed []string
	for _, f := range files {
		if f.Kind == export.KindEvents {
			listed = append(listed, f.Path)
		}
	}
	sort.Strings(listed)
	require.Equal(t, parquetFiles(t, dir, "events"), listed, "manifest and directory disagree")
	requireNoTemps(t, dir)
}

func requireNoTemps(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		require.False(t, strings.HasSuffix(d.Name(), ".tmp"), "temp file left: %s", p)
		return nil
	}))
}

package export_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

func newExporter(t *testing.T, cfg export.Config, src export.Source, agg export.Aggregates) *export.Exporter {
	t.Helper()
	x, err := export.New(cfg, src, agg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, x.Close()) })
	return x
}

func TestExport_RoundTrip(t *testing.T) {
	l := storagetest.New(t)
	want := appendEvents(t, l, genEvents(1, 3000, 5))
	dir := t.TempDir()
	cfg := export.DefaultConfig(dir)
	cfg.Classify = fakeClassify
	x := newExporter(t, cfg, l, nil)

	run, err := x.Export(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), run.FromSeq)
	require.Equal(t, uint64(3000), run.ToSeq)
	require.Equal(t, int64(3000), run.Rows)
	require.Len(t, run.Files, 5, "one file per hour partition")

	files, err := x.Files()
	require.NoError(t, err)
	require.Equal(t, run.Files, files)

	got := readEvents(t, dir)
	require.Len(t, got, 5)
	for _, f := range files {
		rows := got[f.Path]
		require.Len(t, rows, int(f.Rows), f.Path)
		st, err := os.Stat(filepath.Join(dir, f.Path))
		require.NoError(t, err)
		require.Equal(t, st.Size(), f.Bytes)

		// Name: part-<first seq>-<last seq> of the rows in the file.
		minSeq, maxSeq := rows[0].Seq, rows[0].Seq
		for _, r := range rows {
			minSeq, maxSeq = min(minSeq, r.Seq), max(maxSeq, r.Seq)
		}
		require.Equal(t, fmt.Sprintf("part-%d-%d.parquet", minSeq, maxSeq), filepath.Base(f.Path))
		require.Equal(t, uint64(minSeq), f.FirstSeq)
		require.Equal(t, uint64(maxSeq), f.LastSeq)

		// Sorted by campaign, event time, seq.
		require.True(t, slices.IsSortedFunc(rows, func(a, b export.EventRow) int {
			if c := strings.Compare(a.Campaign, b.Campaign); c != 0 {
				return c
			}
			if a.EventTime != b.EventTime {
				return int(a.EventTime - b.EventTime)
			}
			return int(a.Seq - b.Seq)
		}), f.Path)

		for _, r := range rows {
			e := want[r.Seq-1]
			// Partitioned by event time in UTC.
			part := fmt.Sprintf("events/date=%s/hour=%02d/", e.EventTime.UTC().Format("2006-01-02"), e.EventTime.UTC().Hour())
			require.True(t, strings.HasPrefix(f.Path, part), "seq %d at %v in %s", r.Seq, e.EventTime, f.Path)
			if e.Type.IsBounce() {
				fakeClassify(&e)
				require.NotEmpty(t, r.BounceClass)
			}
			require.Equal(t, export.EventRow{
				Seq: int64(e.Seq), Source: e.Source, Provider: e.Provider, ProviderEvent: e.ProviderEvent,
				Account: e.Account, Campaign: e.Campaign, MessageID: e.MessageID, Recipient: e.Recipient,
				RecipientDomain: e.RecipientDomain, Type: e.Type.String(),
				EventTime: e.EventTime.UnixMicro(), ReceivedTime: e.ReceivedTime.UnixMicro(),
				SMTPCode: e.SMTPCode, SMTPStatus: e.SMTPStatus, SMTPResponse: e.SMTPResponse,
				BounceClass: e.BounceClass, BounceReason: e.BounceReason, URL: e.URL, Subject: e.Subject,
				Sender: e.Sender, SendType: e.SendType, SchemaVersion: export.SchemaVersion,
			}, r)
		}
	}
	requireExactlyOnce(t, x, dir, 3000)

	// Nothing new: nothing written.
	run, err = x.Export(t.Context())
	require.NoError(t, err)
	require.Zero(t, run.Rows)
	require.Empty(t, run.Files)

	// New events go to new files, also in hours already exported.
	appendEvents(t, l, genEvents(2, 1000, 5))
	run, err = x.Export(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(3001), run.FromSeq)
	require.Equal(t, uint64(4000), run.ToSeq)
	requireExactlyOnce(t, x, dir, 4000)
}

func TestExport_Chunks(t *testing.T) {
	l := storagetest.New(t)
	appendEvents(t, l, genEvents(3, 2500, 2))
	dir := t.TempDir()
	cfg := export.DefaultConfig(dir)
	cfg.ChunkEvents = 1000
	x := newExporter(t, cfg, l, nil)
	run, err := x.Export(t.Context())
	require.NoError(t, err)
	require.Equal(t, int64(2500), run.Rows)
	require.Len(t, run.Files, 6, "3 steps x 2 hours")
	requireExactlyOnce(t, x, dir, 2500)
	cp, err := l.Checkpoint(export.CheckpointName)
	require.NoError(t, err)
	require.Equal(t, uint64(2500), cp)
}

// TestExport_CrashAndRestart stops a run after a step's files are renamed
// and recorded but before its checkpoint moves, then damages what a crash
// could (a torn or missing manifest record, a stale temp file) and restarts
// with a different chunk size: every event must appear exactly once.
func TestExport_CrashAndRestart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"clean stop", func(*testing.T, string) {}},
		{"manifest record lost", func(t *testing.T, dir string) {
			// The crash came before the manifest append: drop the last
			// step's records (files renamed, never recorded).
			p := filepath.Join(dir, export.ManifestName)
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			lines := strings.SplitAfter(string(b), "\n")
			keep := strings.Join(lines[:len(lines)/2], "")
			require.NoError(t, os.WriteFile(p, []byte(keep+`{"path":"events/da`), 0o644)) // and a torn line
		}},
		{"stale temp file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "events", "date=2026-11-23", "hour=09", ".part-1-99.parquet.tmp")
			require.NoError(t, os.WriteFile(p, []byte("PAR1 half a file"), 0o644))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := storagetest.New(t)
			appendEvents(t, l, genEvents(4, 3000, 3))
			dir := t.TempDir()
			cfg := export.DefaultConfig(dir)
			cfg.ChunkEvents = 1000
			x, err := export.New(cfg, l, nil)
			require.NoError(t, err)
			crash := errors.New("simulated crash")
			export.SetAfterStep(x, func(from, to uint64) error {
				if to == 2000 {
					return crash
				}
				return nil
			})
			_, err = x.Export(t.Context())
			require.ErrorIs(t, err, crash)
			require.NoError(t, x.Close())
			cp, err := l.Checkpoint(export.CheckpointName)
			require.NoError(t, err)
			require.Equal(t, uint64(1000), cp)
			tc.damage(t, dir)

			// More events arrive meanwhile; the restart uses another chunk
			// size, which must not change the pending step's boundaries.
			appendEvents(t, l, genEvents(5, 500, 3))
			cfg.ChunkEvents = 700
			x = newExporter(t, cfg, l, nil)
			cp, err = l.Checkpoint(export.CheckpointName)
			require.NoError(t, err)
			require.Equal(t, uint64(2000), cp, "New finishes the interrupted step")
			_, err = x.Export(t.Context())
			require.NoError(t, err)
			requireExactlyOnce(t, x, dir, 3500)
		})
	}
}

func TestExport_Concurrent(t *testing.T) {
	l := storagetest.New(t)
	dir := t.TempDir()
	cfg := export.DefaultConfig(dir)
	cfg.ChunkEvents = 300
	x := newExporter(t, cfg, l, nil)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 5 {
				_, err := l.AppendCtx(genEvents(uint64(100*i+j), 200, 2)...)
				require.NoError(t, err)
				_, err = x.Export(t.Context())
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	_, err := x.Export(t.Context())
	require.NoError(t, err)
	requireExactlyOnce(t, x, dir, 4000)
}

func TestExport_Canceled(t *testing.T) {
	l := storagetest.New(t)
	appendEvents(t, l, genEvents(6, 2000, 3))
	dir := t.TempDir()
	x := newExporter(t, export.DefaultConfig(dir), l, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := x.Export(ctx)
	require.ErrorIs(t, err, context.Canceled)
	requireNoTemps(t, dir)
	_, err = x.Export(t.Context())
	require.NoError(t, err)
	requireExactlyOnce(t, x, dir, 2000)
}

// fakeAggregates answers for two campaigns.
type fakeAggregates struct{ calls int }

func (f *fakeAggregates) Campaigns(string) ([]engine.CampaignInfo, error) {
	f.calls++
	return []engine.CampaignInfo{
		{Source: "sendpulse", Account: "sendpulse", Campaign: "17076325", FirstEvent: baseTime, LastEvent: baseTime.Add(time.Hour), Events: 12},
		{Source: "emblue", Account: "77", Campaign: "901", FirstEvent: baseTime, LastEvent: baseTime, Events: 3},
	}, nil
}

func (f *fakeAggregates) Funnel(ref engine.CampaignRef, _ engine.Range) (*engine.Funnel, error) {
	return &engine.Funnel{
		Source: ref.Source, Account: ref.Account, Campaign: ref.Campaign,
		Stages:   map[string]engine.Count{"sent": {Recipients: 10, Events: 10}, "delivered": {Recipients: 9, Events: 9}},
		Outcomes: map[string]engine.Count{"hard_bounced": {Recipients: 1, Events: 1}},
	}, nil
}

func (f *fakeAggregates) Timeseries(engine.CampaignRef, time.Duration, engine.Range) ([]engine.Point, error) {
	return []engine.Point{
		{Start: baseTime, Counts: map[string]int64{"sent": 10, "delivered": 9}},
		{Start: baseTime.Add(time.Hour), Counts: map[string]int64{"opened": 4}},
	}, nil
}

func TestExport_Aggregates(t *testing.T) {
	l := storagetest.New(t)
	appendEvents(t, l, genEvents(7, 100, 1))
	dir := t.TempDir()
	agg := &fakeAggregates{}
	x := newExporter(t, export.DefaultConfig(dir), l, agg)
	run, err := x.Export(t.Context())
	require.NoError(t, err)
	require.Len(t, run.Files, 3)

	funnels, err := parquet.ReadFile[export.FunnelRow](filepath.Join(dir, "funnels", "funnels-100.parquet"))
	require.NoError(t, err)
	require.Len(t, funnels, 2*(len(engine.StageNames)+len(engine.OutcomeNames)))
	require.Equal(t, export.FunnelRow{
		Source: "sendpulse", Account: "sendpulse", Campaign: "17076325", Kind: "stage", Name: "sent",
		Recipients: 10, Events: 10, FirstEvent: baseTime.UnixMicro(), LastEvent: baseTime.Add(time.Hour).UnixMicro(),
		AsOfSeq: 100, SchemaVersion: export.SchemaVersion,
	}, funnels[0])
	windows, err := parquet.ReadFile[export.WindowRow](filepath.Join(dir, "windows", "windows-100.parquet"))
	require.NoError(t, err)
	require.Len(t, windows, 2*3)
	require.Equal(t, export.WindowRow{
		Source: "sendpulse", Account: "sendpulse", Campaign: "17076325", WindowStart: baseTime.UnixMicro(),
		WindowSeconds: 3600, Type: "delivered", Events: 9, AsOfSeq: 100, SchemaVersion: export.SchemaVersion,
	}, windows[0])

	// No new events: the snapshot is current, nothing is rewritten.
	run, err = x.Export(t.Context())
	require.NoError(t, err)
	require.Empty(t, run.Files)
	require.Equal(t, 1, agg.calls)

	// New events: a new snapshot replaces the old one.
	appendEvents(t, l, genEvents(8, 50, 1))
	_, err = x.Export(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{"funnels/funnels-150.parquet"}, parquetFiles(t, dir, "funnels"))
	require.Equal(t, []string{"windows/windows-150.parquet"}, parquetFiles(t, dir, "windows"))
	files, err := x.Files()
	require.NoError(t, err)
	var aggs []string
	for _, f := range files {
		if f.Kind != export.KindEvents {
			aggs = append(aggs, f.Path)
		}
	}
	require.ElementsMatch(t, []string{"funnels/funnels-150.parquet", "windows/windows-150.parquet"}, aggs)

	// The manifest survives a restart with the removals applied.
	require.NoError(t, x.Close())
	x = newExporter(t, export.DefaultConfig(dir), l, agg)
	files2, err := x.Files()
	require.NoError(t, err)
	require.Equal(t, len(files), len(files2))
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  export.Config
		want string
	}{
		{"no dir", export.Config{}, "Dir"},
		{"negative chunk", export.Config{Dir: "x", ChunkEvents: -1}, "negative"},
		{"odd window", export.Config{Dir: "x", Window: 90 * time.Second}, "Window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, tc.cfg.Validate(), tc.want)
		})
	}
	require.NoError(t, export.DefaultConfig("x").Validate())
}

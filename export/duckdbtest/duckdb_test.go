package duckdbtest_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

var base = time.Date(2026, 11, 23, 22, 0, 0, 0, time.UTC)

// events spread over 4 hours across midnight UTC, with 3 campaigns.
func events(n int) []event.Event {
	types := []event.Type{event.Sent, event.Delivered, event.Opened, event.Clicked, event.HardBounce, event.Other}
	out := make([]event.Event, n)
	for i := range out {
		typ := types[i%len(types)]
		rcpt := fmt.Sprintf("User%d@Example.COM", i%97)
		et := base.Add(time.Duration(i*7919%(4*3600_000)) * time.Millisecond).Add(time.Duration(i%1000) * time.Microsecond)
		e := event.Event{
			Source: "sendpulse", Provider: "sendpulse", ProviderEvent: typ.String(), Account: "sendpulse",
			Campaign: fmt.Sprint(100 + i%3), MessageID: fmt.Sprintf("m%d", i), Recipient: rcpt,
			RecipientDomain: event.Domain(rcpt), Type: typ, EventTime: et, ReceivedTime: et.Add(time.Second),
			Subject: "Ofertas de ñandú", Sender: "news@example.com",
		}
		if typ == event.HardBounce {
			e.SMTPCode, e.SMTPStatus, e.SMTPResponse = 550, "5.1.1", "550 5.1.1 user unknown"
		}
		out[i] = e
	}
	return out
}

func TestDuckDBReadsExport(t *testing.T) {
	const n = 6000
	l := storagetest.New(t)
	evs := events(n)
	_, err := l.AppendCtx(evs...)
	require.NoError(t, err)

	dir := t.TempDir()
	cfg := export.DefaultConfig(dir)
	cfg.ChunkEvents = 2500 // several files per partition
	cfg.Classify = func(e *event.Event) { e.BounceClass, e.BounceReason = "hard", "user_unknown" }
	x, err := export.New(cfg, l, nil)
	require.NoError(t, err)
	defer x.Close()
	_, err = x.Export(t.Context())
	require.NoError(t, err)
	// A stale temp file must be invisible to the glob.
	tmp := filepath.Join(dir, "events", "date=2026-11-23", "hour=22", ".part-1-2.parquet.tmp")
	require.NoError(t, os.WriteFile(tmp, []byte("garbage"), 0o644))

	db, err := sql.Open("duckdb", "")
	require.NoError(t, err)
	defer db.Close()
	src := fmt.Sprintf("read_parquet('%s/events/**/*.parquet', hive_partitioning = true)", dir)

	// Column types: no unsigned, no nanoseconds, times WITH TIME ZONE.
	rows, err := db.Query("DESCRIBE SELECT * FROM " + src)
	require.NoError(t, err)
	types := map[string]string{}
	for rows.Next() {
		var name, typ string
		var null, key, def, extra sql.NullString
		require.NoError(t, rows.Scan(&name, &typ, &null, &key, &def, &extra))
		types[name] = typ
	}
	require.NoError(t, rows.Err())
	rows.Close()
	require.Equal(t, "TIMESTAMP WITH TIME ZONE", types["event_time"])
	require.Equal(t, "TIMESTAMP WITH TIME ZONE", types["received_time"])
	require.Equal(t, "BIGINT", types["seq"])
	require.Equal(t, "INTEGER", types["smtp_code"])
	require.Equal(t, "VARCHAR", types["recipient"])
	require.Contains(t, types, "date")
	require.Contains(t, types, "hour")
	for name, typ := range types {
		require.False(t, strings.HasPrefix(typ, "U"), "%s is unsigned: %s", name, typ)
		require.NotContains(t, typ, "_NS", "%s is nanoseconds: %s", name, typ)
	}

	// Row counts per campaign and type.
	want := map[[2]string]int{}
	for _, e := range evs {
		want[[2]string{e.Campaign, e.Type.String()}]++
	}
	got := map[[2]string]int{}
	rows, err = db.Query("SELECT campaign, type, count(*) FROM " + src + " GROUP BY ALL")
	require.NoError(t, err)
	for rows.Next() {
		var c, ty string
		var k int
		require.NoError(t, rows.Scan(&c, &ty, &k))
		got[[2]string{c, ty}] = k
	}
	require.NoError(t, rows.Err())
	rows.Close()
	require.Equal(t, want, got)

	// Every event exactly once, with the right instants, strings and
	// partition columns.
	rows, err = db.Query("SELECT seq, epoch_us(event_time), event_time, received_time, subject, bounce_class, " +
		"strftime(date, '%Y-%m-%d'), hour FROM " + src + " ORDER BY seq")
	require.NoError(t, err)
	i := 0
	for rows.Next() {
		var (
			seq, us       int64
			et, rt        time.Time
			subject, bcls string
			date          string
			hour          int
		)
		require.NoError(t, rows.Scan(&seq, &us, &et, &rt, &subject, &bcls, &date, &hour))
		e := evs[i]
		require.Equal(t, int64(i+1), seq)
		require.Equal(t, e.EventTime.UnixMicro(), us, "seq %d", seq)
		require.True(t, e.EventTime.Equal(et), "seq %d: %v != %v", seq, et, e.EventTime)
		require.True(t, e.ReceivedTime.Equal(rt), "seq %d", seq)
		require.Equal(t, e.Subject, subject)
		require.Equal(t, e.EventTime.Format("2006-01-02"), date)
		require.Equal(t, e.EventTime.Hour(), hour)
		if e.Type.IsBounce() {
			require.Equal(t, "hard", bcls)
		}
		i++
	}
	require.NoError(t, rows.Err())
	rows.Close()
	require.Equal(t, n, i)

	// The schema version is in the key-value metadata.
	var v string
	require.NoError(t, db.QueryRow(fmt.Sprintf(
		"SELECT decode(value) FROM parquet_kv_metadata('%s/events/**/*.parquet') WHERE decode(key) = '%s' LIMIT 1",
		dir, export.SchemaVersionKey)).Scan(&v))
	require.Equal(t, fmt.Sprint(export.SchemaVersion), v)
}

// TestDuckDBReadsPagedExport reads files with several row groups and
// string columns cut into several pages, which the events file encoder
// writes for busy hours, and checks the column statistics DuckDB sees.
func TestDuckDBReadsPagedExport(t *testing.T) {
	const n = 3000
	l := storagetest.New(t)
	evs := events(n)
	for i := range evs {
		if i%10 == 0 {
			evs[i].SMTPResponse = strings.Repeat(fmt.Sprint(i%7), 60_000) // > 1 MiB per row group
		}
	}
	_, err := l.AppendCtx(evs...)
	require.NoError(t, err)
	dir := t.TempDir()
	cfg := export.DefaultConfig(dir)
	cfg.RowGroupRows = 300 // 750 rows a file
	x, err := export.New(cfg, l, nil)
	require.NoError(t, err)
	defer x.Close()
	_, err = x.Export(t.Context())
	require.NoError(t, err)

	db, err := sql.Open("duckdb", "")
	require.NoError(t, err)
	defer db.Close()
	src := fmt.Sprintf("read_parquet('%s/events/**/*.parquet', hive_partitioning = true)", dir)
	var rows, total, minSeq, maxSeq int64
	require.NoError(t, db.QueryRow("SELECT count(*), sum(length(smtp_response)), min(seq), max(seq) FROM "+src).
		Scan(&rows, &total, &minSeq, &maxSeq))
	want := int64(0)
	for _, e := range evs {
		want += int64(len(e.SMTPResponse))
	}
	require.Equal(t, int64(n), rows)
	require.Equal(t, want, total)
	require.Equal(t, int64(1), minSeq)
	require.Equal(t, int64(n), maxSeq)

	// Row groups and their statistics as DuckDB reads them.
	var files, groups, withStats int64
	require.NoError(t, db.QueryRow(fmt.Sprintf(
		"SELECT count(DISTINCT file_name), count(DISTINCT (file_name, row_group_id)), "+
			"count(*) FILTER (WHERE stats_min_value IS NOT NULL) "+
			"FROM parquet_metadata('%s/events/**/*.parquet') WHERE path_in_schema = 'seq'", dir)).Scan(&files, &groups, &withStats))
	require.Equal(t, int64(4), files)
	require.GreaterOrEqual(t, groups, 3*files, "about 750 rows a file, at most 300 a row group")
	require.Equal(t, groups, withStats)
}

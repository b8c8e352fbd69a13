package export_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// TestEventFile_PagesAndRowGroups checks the events file encoder where the
// other tests do not reach: several row groups, plain string columns cut
// into several pages, dictionaries past their small linear size, and the
// page index and chunk statistics computed by hand, which must equal what
// the rows read back imply (with parquet-go's 16-byte truncation of string
// bounds in the column index).
func TestEventFile_PagesAndRowGroups(t *testing.T) {
	l := storagetest.New(t)
	evs := genEvents(5, 3000, 1)
	for i := range evs {
		e := &evs[i]
		if i%10 == 0 {
			// 3,000 / 10 x 20 KB: several 1 MiB pages per row group.
			e.SMTPCode, e.SMTPStatus = 421, "4.7.0"
			e.SMTPResponse = strings.Repeat(string(rune('a'+i%26)), 20_000)
		}
		e.URL = "https://shop.example.com/p/" + string(rune('A'+i%40)) // 40 values
	}
	appendEvents(t, l, evs)
	dir := t.TempDir()
	cfg := export.DefaultConfig(dir)
	cfg.Classify = fakeClassify
	cfg.RowGroupRows = 1000
	x := newExporter(t, cfg, l, nil)
	_, err := x.Export(t.Context())
	require.NoError(t, err)
	requireExactlyOnce(t, x, dir, len(evs))

	paths := parquetFiles(t, dir, "events")
	require.Len(t, paths, 1)
	pf := openParquet(t, filepath.Join(dir, paths[0]))
	md := pf.Metadata()
	require.Len(t, md.RowGroups, 3)
	require.Equal(t, int64(len(evs)), md.NumRows)

	rows := readRows(t, pf)
	require.Len(t, rows, len(evs))
	cis, ois := pf.ColumnIndexes(), pf.OffsetIndexes()
	ncol := len(md.RowGroups[0].Columns)
	first := 0
	for g, rg := range md.RowGroups {
		rgRows := rows[first : first+int(rg.NumRows)]
		first += int(rg.NumRows)
		for c, cc := range rg.Columns {
			m := cc.MetaData
			name := md.Schema[c+1].Name
			require.Equal(t, []string{name}, []string(m.PathInSchema))
			require.Equal(t, rg.NumRows, m.NumValues, name)
			lo, hi := bounds(m.Type, rgRows, c)
			require.Equal(t, lo, m.Statistics.MinValue, "%s min", name)
			require.Equal(t, hi, m.Statistics.MaxValue, "%s max", name)

			ci, oi := cis[g*ncol+c], ois[g*ncol+c]
			require.Len(t, ci.MinValues, len(oi.PageLocations), name)
			if name == "smtp_response" {
				require.Greater(t, len(oi.PageLocations), 1, "smtp_response pages")
			}
			for p, loc := range oi.PageLocations {
				end := int(rg.NumRows)
				if p+1 < len(oi.PageLocations) {
					end = int(oi.PageLocations[p+1].FirstRowIndex)
				}
				lo, hi := bounds(m.Type, rgRows[loc.FirstRowIndex:end], c)
				if m.Type == format.ByteArray {
					lo, hi = truncMin(lo), truncMax(hi)
				}
				require.Equal(t, lo, ci.MinValues[p], "%s page %d min", name, p)
				require.Equal(t, hi, ci.MaxValues[p], "%s page %d max", name, p)
			}
		}
	}
}

func readRows(t *testing.T, pf *parquet.File) []parquet.Row {
	t.Helper()
	r := parquet.NewReader(pf)
	defer r.Close()
	var out []parquet.Row
	buf := make([]parquet.Row, 100)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			out = append(out, row.Clone())
		}
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
	}
}

// bounds returns the least and greatest value of column c in rows, plain
// encoded as statistics are.
func bounds(typ format.Type, rows []parquet.Row, c int) (lo, hi []byte) {
	enc := func(v parquet.Value) []byte {
		switch typ {
		case format.Int64:
			return binary.LittleEndian.AppendUint64(nil, uint64(v.Int64()))
		case format.Int32:
			return binary.LittleEndian.AppendUint32(nil, uint32(v.Int32()))
		}
		return slices.Clip(append([]byte{}, v.ByteArray()...))
	}
	cmp := func(a, b parquet.Value) int {
		switch typ {
		case format.Int64:
			return int(min(max(a.Int64()-b.Int64(), -1), 1))
		case format.Int32:
			return int(min(max(int64(a.Int32())-int64(b.Int32()), -1), 1))
		}
		return bytes.Compare(a.ByteArray(), b.ByteArray())
	}
	l, h := rows[0][c], rows[0][c]
	for _, r := range rows {
		if cmp(r[c], l) < 0 {
			l = r[c]
		}
		if cmp(r[c], h) > 0 {
			h = r[c]
		}
	}
	return enc(l), enc(h)
}

func truncMin(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

func truncMax(b []byte) []byte {
	if len(b) <= 16 {
		return b
	}
	t := slices.Clone(b[:16])
	for i := len(t) - 1; i >= 0; i-- {
		if t[i]++; t[i] != 0 {
			break
		}
	}
	return t
}

// TestEventFile_BytesIndependentOfWorkers: row groups and column chunks are
// encoded concurrently and then placed in the file, so the bytes must not
// depend on how many encoders ran (Config.Workers), with several row
// groups per file and more row groups than encoders.
func TestEventFile_BytesIndependentOfWorkers(t *testing.T) {
	l := storagetest.New(t)
	appendEvents(t, l, genEvents(9, 4000, 3))
	export1 := func(workers int) string {
		require.NoError(t, l.SetCheckpoint(export.CheckpointName, 0))
		require.NoError(t, l.SetCheckpoint(export.IntentName, 0))
		dir := t.TempDir()
		cfg := export.DefaultConfig(dir)
		cfg.Classify = fakeClassify
		cfg.RowGroupRows = 200
		cfg.Workers = workers
		x := newExporter(t, cfg, l, nil)
		_, err := x.Export(t.Context())
		require.NoError(t, err)
		return dir
	}
	one, many := export1(1), export1(5)
	paths := parquetFiles(t, one, "events")
	require.Equal(t, paths, parquetFiles(t, many, "events"))
	require.NotEmpty(t, paths)
	for _, p := range paths {
		require.Greater(t, len(openParquet(t, filepath.Join(one, p)).Metadata().RowGroups), 5, p)
		a, err := os.ReadFile(filepath.Join(one, p))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(many, p))
		require.NoError(t, err)
		require.True(t, bytes.Equal(a, b), "%s differs between 1 and 5 workers", p)
	}
}

package export_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/export"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// TestSparkRules reads the footer of every exported file and checks what
// Spark (which is not available here) and older Hive-era readers require:
// flat columns with legal names, no unsigned integers, timestamps as INT64
// MICROS adjusted to UTC (no INT96, no NANOS), UTF-8 strings, no DELTA_*
// encodings, zstd, statistics and the schema version.
func TestSparkRules(t *testing.T) {
	l := storagetest.New(t)
	appendEvents(t, l, genEvents(9, 2000, 2))
	dir := t.TempDir()
	cfg := export.DefaultConfig(dir)
	cfg.Classify = fakeClassify
	x := newExporter(t, cfg, l, &fakeAggregates{})
	_, err := x.Export(t.Context())
	require.NoError(t, err)

	wantTimes := map[string]bool{"event_time": true, "received_time": true, "window_start": true, "first_event": true, "last_event": true}
	paths := append(parquetFiles(t, dir, "events"), append(parquetFiles(t, dir, "windows"), parquetFiles(t, dir, "funnels")...)...)
	require.Len(t, paths, 4)
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			pf := openParquet(t, filepath.Join(dir, p))
			md := pf.Metadata()

			kv := map[string]string{}
			for _, e := range md.KeyValueMetadata {
				kv[e.Key] = e.Value
			}
			require.Equal(t, "1", kv[export.SchemaVersionKey])

			require.Greater(t, len(md.Schema), 1)
			root := md.Schema[0]
			require.Equal(t, int32(len(md.Schema)-1), root.NumChildren.V, "flat: the root's children are all the columns")
			timeCols := 0
			for _, el := range md.Schema[1:] {
				require.False(t, el.NumChildren.Valid && el.NumChildren.V > 0, "%s is nested", el.Name)
				require.NotContains(t, []format.FieldRepetitionType{format.Repeated}, el.RepetitionType.V, el.Name)
				require.False(t, strings.ContainsAny(el.Name, " ,;{}()\n\t="), "illegal column name %q", el.Name)
				require.True(t, el.Type.Valid, el.Name)
				require.NotEqual(t, format.Int96, el.Type.V, "%s is INT96", el.Name)
				if el.ConvertedType.Valid {
					switch el.ConvertedType.V {
					case deprecated.Uint8, deprecated.Uint16, deprecated.Uint32, deprecated.Uint64:
						t.Errorf("%s is unsigned", el.Name)
					}
				}
				switch lt := el.LogicalType.Value.(type) {
				case *format.IntType:
					require.True(t, lt.IsSigned, "%s is unsigned", el.Name)
				case *format.TimestampType:
					timeCols++
					require.True(t, wantTimes[el.Name], "unexpected timestamp %s", el.Name)
					require.Equal(t, format.Int64, el.Type.V)
					require.True(t, lt.IsAdjustedToUTC, "%s not adjusted to UTC", el.Name)
					_, micros := lt.Unit.Value.(*format.MicroSeconds)
					require.True(t, micros, "%s unit is %v, want MICROS", el.Name, lt.Unit.String())
				case *format.StringType:
					require.Equal(t, format.ByteArray, el.Type.V)
				case nil:
					require.Contains(t, []format.Type{format.Int32, format.Int64}, el.Type.V, "%s has no logical type", el.Name)
				default:
					t.Errorf("%s: unexpected logical type %v", el.Name, el.LogicalType.String())
				}
				if wantTimes[el.Name] {
					require.IsType(t, &format.TimestampType{}, el.LogicalType.Value, "%s is not a timestamp", el.Name)
				}
			}
			require.Positive(t, timeCols)

			require.NotEmpty(t, md.RowGroups)
			for _, rg := range md.RowGroups {
				for _, cc := range rg.Columns {
					cm := cc.MetaData
					name := strings.Join(cm.PathInSchema, ".")
					require.Equal(t, format.Zstd, cm.Codec, name)
					for _, enc := range cm.Encoding {
						switch enc {
						case format.Plain, format.RLEDictionary, format.RLE:
						default:
							t.Errorf("%s uses encoding %v", name, enc)
						}
					}
					for _, es := range cm.EncodingStats {
						require.NotContains(t, []format.Encoding{format.DeltaBinaryPacked, format.DeltaLengthByteArray, format.DeltaByteArray}, es.Encoding, name)
					}
					require.NotNil(t, cm.Statistics.MinValue, "%s has no min statistic", name)
					require.NotNil(t, cm.Statistics.MaxValue, "%s has no max statistic", name)
				}
			}
			if strings.HasPrefix(p, "events/") {
				cols := map[string]bool{}
				for _, el := range md.Schema[1:] {
					cols[el.Name] = true
				}
				for _, c := range []string{"seq", "source", "provider", "provider_event", "account", "campaign", "message_id",
					"recipient", "recipient_domain", "type", "event_time", "received_time", "smtp_code", "smtp_status",
					"smtp_response", "bounce_class", "bounce_reason", "url", "subject", "sender", "send_type", "schema_version"} {
					require.True(t, cols[c], "missing column %s", c)
				}
				// Sorting columns recorded for readers that use them, each
				// naming its column (parquet-go's reused writers once wrote
				// column 0 three times), and every chunk's path_in_schema.
				idx := map[string]int32{}
				for i, el := range md.Schema[1:] {
					idx[el.Name] = int32(i)
				}
				for _, rg := range md.RowGroups {
					var sc []int32
					for _, c := range rg.SortingColumns {
						sc = append(sc, c.ColumnIdx)
					}
					require.Equal(t, []int32{idx["campaign"], idx["event_time"], idx["seq"]}, sc)
					for i, cc := range rg.Columns {
						require.Equal(t, []string{md.Schema[i+1].Name}, []string(cc.MetaData.PathInSchema))
					}
				}
				// Page statistics are in the column index (not in the page
				// headers): one min/max per page of every column chunk.
				cis := pf.ColumnIndexes()
				require.Len(t, cis, len(md.RowGroups)*len(md.RowGroups[0].Columns))
				for i, ci := range cis {
					require.NotEmpty(t, ci.MinValues, "column index %d", i)
					require.Len(t, ci.MaxValues, len(ci.MinValues), "column index %d", i)
				}
			}
		})
	}
}

package query

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/gofiber/fiber/v2"

	"github.com/mailfunnel/mailfunnel/engine"
)

// ArrowStream is the media type of the Arrow IPC streaming format.
const ArrowStream = "application/vnd.apache.arrow.stream"

func wantsArrow(c *fiber.Ctx) bool {
	return strings.Contains(c.Get(fiber.HeaderAccept), ArrowStream)
}

// writeArrow answers with rec as a one-batch Arrow IPC stream and releases it.
func writeArrow(c *fiber.Ctx, rec arrow.RecordBatch) error {
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(memory.DefaultAllocator))
	if err := w.Write(rec); err != nil {
		return fmt.Errorf("write arrow record: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("close arrow stream: %w", err)
	}
	c.Set(fiber.HeaderContentType, ArrowStream)
	return c.Send(buf.Bytes())
}

var tsUTC = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// funnelRecord flattens a funnel into one row per stage and outcome, the
// shape data tools want: (source, account, campaign, kind, name,
// recipients, events). Rates are derivable and left to the tool.
func funnelRecord(f *engine.Funnel) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "source", Type: arrow.BinaryTypes.String},
		{Name: "account", Type: arrow.BinaryTypes.String},
		{Name: "campaign", Type: arrow.BinaryTypes.String},
		{Name: "kind", Type: arrow.BinaryTypes.String},
		{Name: "name", Type: arrow.BinaryTypes.String},
		{Name: "recipients", Type: arrow.PrimitiveTypes.Int64},
		{Name: "events", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	row := func(kind, name string, c engine.Count) {
		b.Field(0).(*array.StringBuilder).Append(f.Source)
		b.Field(1).(*array.StringBuilder).Append(f.Account)
		b.Field(2).(*array.StringBuilder).Append(f.Campaign)
		b.Field(3).(*array.StringBuilder).Append(kind)
		b.Field(4).(*array.StringBuilder).Append(name)
		b.Field(5).(*array.Int64Builder).Append(c.Recipients)
		b.Field(6).(*array.Int64Builder).Append(c.Events)
	}
	for _, n := range engine.StageNames {
		row("stage", n, f.Stages[n])
	}
	for _, n := range engine.OutcomeNames {
		row("outcome", n, f.Outcomes[n])
	}
	return b.NewRecordBatch()
}

func campaignsRecord(cs []engine.CampaignInfo) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "source", Type: arrow.BinaryTypes.String},
		{Name: "account", Type: arrow.BinaryTypes.String},
		{Name: "campaign", Type: arrow.BinaryTypes.String},
		{Name: "first_event", Type: tsUTC},
		{Name: "last_event", Type: tsUTC},
		{Name: "events", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, c := range cs {
		b.Field(0).(*array.StringBuilder).Append(c.Source)
		b.Field(1).(*array.StringBuilder).Append(c.Account)
		b.Field(2).(*array.StringBuilder).Append(c.Campaign)
		b.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(c.FirstEvent.UnixMicro()))
		b.Field(4).(*array.TimestampBuilder).Append(arrow.Timestamp(c.LastEvent.UnixMicro()))
		b.Field(5).(*array.Int64Builder).Append(c.Events)
	}
	return b.NewRecordBatch()
}

// timeseriesRecord is the long form of a time series: one row per window
// and event type, with the window's finality and late events repeated on
// each of its rows, and a recipients column when distinct was asked for.
func timeseriesRecord(pts []engine.Point, distinct bool) arrow.RecordBatch {
	fields := []arrow.Field{
		{Name: "start", Type: tsUTC},
		{Name: "type", Type: arrow.BinaryTypes.String},
		{Name: "events", Type: arrow.PrimitiveTypes.Int64},
		{Name: "final", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "late_events", Type: arrow.PrimitiveTypes.Int64},
		{Name: "revision", Type: arrow.PrimitiveTypes.Int64},
	}
	if distinct {
		fields = append(fields, arrow.Field{Name: "recipients", Type: arrow.PrimitiveTypes.Int64})
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	defer b.Release()
	for _, p := range pts {
		for _, typ := range sortedKeys(p.Counts) {
			b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(p.Start.UnixMicro()))
			b.Field(1).(*array.StringBuilder).Append(typ)
			b.Field(2).(*array.Int64Builder).Append(p.Counts[typ])
			b.Field(3).(*array.BooleanBuilder).Append(p.Final)
			b.Field(4).(*array.Int64Builder).Append(p.LateEvents)
			b.Field(5).(*array.Int64Builder).Append(p.Revision)
			if distinct {
				b.Field(6).(*array.Int64Builder).Append(p.Recipients[typ])
			}
		}
	}
	return b.NewRecordBatch()
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func groupsRecord(gs []engine.Group) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "key", Type: arrow.BinaryTypes.String},
		{Name: "events", Type: arrow.PrimitiveTypes.Int64},
		{Name: "recipients", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, g := range gs {
		b.Field(0).(*array.StringBuilder).Append(g.Key)
		b.Field(1).(*array.Int64Builder).Append(g.Events)
		b.Field(2).(*array.Int64Builder).Append(g.Recipients)
	}
	return b.NewRecordBatch()
}

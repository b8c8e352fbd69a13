package export

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/rle"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// The events files are encoded here, column by column, straight from a
// partition's blocks, rather than by parquet-go's row writer: shredding
// EventRows into columns, hashing every value of 14 dictionary columns
// into parquet-go's dictionaries and recomputing page bounds value by value
// (string comparisons through the dictionary) took about a third of the
// export's CPU. Here one pass over a row group's rows, in file order, feeds
// every column (each row's record and strings are read from memory once);
// a dictionary remembers the last value it saw (rows are sorted by
// campaign, so most columns repeat) and only builds a map past a few
// values; the bounds of a dictionary page are computed over its distinct
// values; and integers are copied without going through parquet.Value.
//
// Only the encoding of pages and the footer's per-file numbers are done
// here. Everything a reader interprets beyond that (the schema elements
// with their logical types, key-value metadata, created_by, column orders,
// sorting columns, each column's physical type, encodings and codec) is
// taken from a one-row file that parquet-go writes from EventRow's tags
// with the exporter's options (eventTemplate), so EventRow stays the single
// definition of the schema. The layout is what parquet-go writes too:
// version 1 data pages without levels (every column is required), one
// PLAIN dictionary page first in each dictionary-encoded chunk, page
// statistics in the column index and the chunk metadata only, then the
// column indexes, the offset indexes and the footer.

// pageBytes is the most encoded bytes a data page holds before it is
// compressed, the same 1 MiB as parquet.PageBufferSize in writerOptions
// (where a dictionary page's index counts 4 bytes a value).
const pageBytes = 1 << 20

// Column value sources beyond the string fields of a crow (fieldSource ...).
const (
	srcSeq = numFields + iota
	srcEventTime
	srcReceivedTime
	srcSMTPCode
	srcType
	srcSchemaVersion
)

// eventColumn is one leaf column of EventRow as the template wrote it.
type eventColumn struct {
	name string
	src  int         // fieldX or srcX
	typ  format.Type // physical type
	dict bool        // RLE_DICTIONARY data pages after a PLAIN dictionary page
	meta format.ColumnMetaData
}

// eventTemplate is what every events file shares: the footer fields that do
// not depend on the rows, and the columns.
type eventTemplate struct {
	md   format.FileMetaData // Schema, KeyValueMetadata, CreatedBy, ColumnOrders, Version
	sort []format.SortingColumn
	cols []eventColumn
}

// newEventTemplate has parquet-go write one EventRow with opts and keeps
// what its footer says about the schema and the columns.
func newEventTemplate(opts []parquet.WriterOption) (*eventTemplate, error) {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[EventRow](&buf, opts...)
	if _, err := w.Write([]EventRow{{SchemaVersion: SchemaVersion}}); err != nil {
		return nil, fmt.Errorf("write events template: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("write events template: %w", err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		return nil, fmt.Errorf("read events template: %w", err)
	}
	md := f.Metadata()
	if len(md.RowGroups) != 1 {
		return nil, fmt.Errorf("events template: %d row groups", len(md.RowGroups))
	}
	rg := md.RowGroups[0]
	t := &eventTemplate{
		md: format.FileMetaData{
			Version: md.Version, Schema: md.Schema, KeyValueMetadata: md.KeyValueMetadata,
			CreatedBy: md.CreatedBy, ColumnOrders: md.ColumnOrders,
		},
		sort: rg.SortingColumns,
	}
	for i, cc := range rg.Columns {
		m := cc.MetaData
		if len(m.PathInSchema) != 1 || i+1 >= len(md.Schema) || md.Schema[i+1].Name != m.PathInSchema[0] {
			return nil, fmt.Errorf("events template: column %d is not flat", i)
		}
		c := eventColumn{name: m.PathInSchema[0], typ: m.Type, dict: slices.Contains(m.Encoding, format.RLEDictionary)}
		c.src = columnSource(c.name)
		switch {
		case c.src < 0:
			return nil, fmt.Errorf("events template: no values for column %q", c.name)
		case c.src < numFields || c.src == srcType:
			if c.typ != format.ByteArray {
				return nil, fmt.Errorf("events template: column %q is %v, want BYTE_ARRAY", c.name, c.typ)
			}
		case c.src == srcSMTPCode || c.src == srcSchemaVersion:
			if c.typ != format.Int32 {
				return nil, fmt.Errorf("events template: column %q is %v, want INT32", c.name, c.typ)
			}
		default:
			if c.typ != format.Int64 {
				return nil, fmt.Errorf("events template: column %q is %v, want INT64", c.name, c.typ)
			}
		}
		c.meta = format.ColumnMetaData{
			Type: m.Type, Encoding: slices.Clone(m.Encoding), PathInSchema: slices.Clone(m.PathInSchema), Codec: m.Codec,
		}
		t.cols = append(t.cols, c)
	}
	// Every value source feeds exactly one column (fileWriter.bySrc).
	var seen [srcSchemaVersion + 1]bool
	for _, c := range t.cols {
		if seen[c.src] {
			return nil, fmt.Errorf("events template: two columns for %q", c.name)
		}
		seen[c.src] = true
	}
	if i := slices.Index(seen[:], false); i >= 0 {
		return nil, fmt.Errorf("events template: no column for value source %d", i)
	}
	return t, nil
}

// columnSource maps an EventRow column to where its values come from, or -1.
func columnSource(name string) int {
	switch name {
	case "seq":
		return srcSeq
	case "event_time":
		return srcEventTime
	case "received_time":
		return srcReceivedTime
	case "smtp_code":
		return srcSMTPCode
	case "type":
		return srcType
	case "schema_version":
		return srcSchemaVersion
	}
	for f, n := range [numFields]string{
		fieldSource: "source", fieldProvider: "provider", fieldProviderEvent: "provider_event",
		fieldAccount: "account", fieldCampaign: "campaign", fieldMessageID: "message_id",
		fieldRecipient: "recipient", fieldRecipientDomain: "recipient_domain", fieldSMTPStatus: "smtp_status",
		fieldSMTPResponse: "smtp_response", fieldBounceClass: "bounce_class", fieldBounceReason: "bounce_reason",
		fieldURL: "url", fieldSubject: "subject", fieldSender: "sender", fieldSendType: "send_type",
	} {
		if n == name {
			return f
		}
	}
	return -1
}

// fileWriter writes events files; one per partWriter, reused file after
// file.
type fileWriter struct {
	t        *eventTemplate
	codec    *zstdCodec
	rowGroup int // most rows in a row group
	workers  int // most row groups, and column chunks of a row group, encoded at once

	out  *bufio.Writer
	off  int64 // bytes written to the current file
	hdr  bytes.Buffer
	henc *thrift.Encoder

	// rgs encode a file's row groups, up to workers at a time; reused
	// file to file.
	rgs []*rowGroupEnc

	rowGroups []format.RowGroup
	colIdx    []format.ColumnIndex // row group by row group, column by column
	offIdx    []format.OffsetIndex
}

// colBuf holds one column's values of the row group being written: the
// plain encoding (split into pages at cuts) or the dictionary and indexes.
type colBuf struct {
	*eventColumn
	body []byte   // plain values
	cuts []cut    // plain BYTE_ARRAY: the end of every page
	lo   string   // plain BYTE_ARRAY: bounds of the page being filled
	hi   string   //
	n    int      // values in the page being filled
	ints []int64  // INT64 and INT32 values
	idx  []int32  // dictionary indexes
	d    dict     // dictionary
	ci   chunkIdx // the chunk being written

	// The chunk encoded in memory, offsets relative to its start: the
	// columns of a row group are encoded concurrently, then written one
	// after the other (see writeRowGroup).
	out   []byte
	hdr   bytes.Buffer
	henc  *thrift.Encoder
	zbody []byte
	cc    format.ColumnChunk
	err   error
}

// cut ends a page of a plain BYTE_ARRAY column.
type cut struct {
	end    int // offset in body
	rows   int
	lo, hi []byte
}

func newFileWriter(t *eventTemplate, codec *zstdCodec, rowGroupRows, workers int) *fileWriter {
	w := &fileWriter{t: t, codec: codec, rowGroup: rowGroupRows, workers: max(1, workers), out: bufio.NewWriterSize(nil, 64<<10)}
	w.henc = thrift.NewEncoder(new(thrift.CompactProtocol).NewWriter(&w.hdr))
	return w
}

// rowGroupEnc encodes one row group: its column buffers, reused row
// group to row group.
type rowGroupEnc struct {
	cols  []colBuf // one per template column
	bySrc [srcSchemaVersion + 1]*colBuf
	// typeIdx is the dictionary index of each event type in the row
	// group (-1: not seen yet), so that the type column, which changes
	// from row to row, costs no string comparisons.
	typeIdx [256]int32
	err     error
}

func newRowGroupEnc(t *eventTemplate) *rowGroupEnc {
	g := &rowGroupEnc{cols: make([]colBuf, len(t.cols))}
	for i := range g.cols {
		c := &g.cols[i]
		c.eventColumn = &t.cols[i]
		c.henc = thrift.NewEncoder(new(thrift.CompactProtocol).NewWriter(&c.hdr))
		g.bySrc[t.cols[i].src] = c
	}
	return g
}

var parquetMagic = []byte("PAR1")

// write writes the rows of p in the order of keys to f as one Parquet file.
func (w *fileWriter) write(f io.Writer, p *part, keys []sortKey) error {
	w.out.Reset(f)
	w.off = 0
	w.rowGroups, w.colIdx, w.offIdx = w.rowGroups[:0], w.colIdx[:0], w.offIdx[:0]
	w.put(parquetMagic)
	var groups [][]sortKey
	for len(keys) > 0 {
		n := min(len(keys), w.rowGroup)
		groups = append(groups, keys[:n])
		keys = keys[n:]
	}
	// The row groups are encoded concurrently, workers at a time (the
	// gathering pass over the rows is otherwise the one serial part of a
	// large file), then written in order; the encoders, and so the memory,
	// are bounded by workers, not by the file's size.
	for len(w.rgs) < min(len(groups), w.workers) {
		w.rgs = append(w.rgs, newRowGroupEnc(w.t))
	}
	for len(groups) > 0 {
		wave := groups[:min(len(groups), len(w.rgs))]
		groups = groups[len(wave):]
		var wg sync.WaitGroup
		for i, g := range wave {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rg := w.rgs[i]
				rg.gather(p, g)
				rg.err = rg.encodeChunks(w.codec, len(g), w.workers)
			}()
		}
		wg.Wait()
		for i, g := range wave {
			if err := w.rgs[i].err; err != nil {
				return err
			}
			w.writeRowGroup(w.rgs[i], len(g))
		}
	}
	// The page indexes, then the footer, as parquet-go lays them out.
	nc := len(w.t.cols)
	for i := range w.colIdx {
		cc := &w.rowGroups[i/nc].Columns[i%nc]
		cc.ColumnIndexOffset = w.off
		if err := w.encode(&w.colIdx[i]); err != nil {
			return err
		}
		cc.ColumnIndexLength = int32(w.off - cc.ColumnIndexOffset)
	}
	for i := range w.offIdx {
		cc := &w.rowGroups[i/nc].Columns[i%nc]
		cc.OffsetIndexOffset = w.off
		if err := w.encode(&w.offIdx[i]); err != nil {
			return err
		}
		cc.OffsetIndexLength = int32(w.off - cc.OffsetIndexOffset)
	}
	md := w.t.md
	md.RowGroups = w.rowGroups
	for _, rg := range w.rowGroups {
		md.NumRows += rg.NumRows
	}
	start := w.off
	if err := w.encode(&md); err != nil {
		return err
	}
	w.put(binary.LittleEndian.AppendUint32(nil, uint32(w.off-start)))
	w.put(parquetMagic)
	// Keep no references into the partition's strings.
	for _, rg := range w.rgs {
		for i := range rg.cols {
			c := &rg.cols[i]
			c.lo, c.hi = "", ""
			c.d.reset()
		}
	}
	return w.out.Flush()
}

// put writes b; a write error is kept by the bufio.Writer and returned by
// the final Flush.
func (w *fileWriter) put(b []byte) {
	w.out.Write(b)
	w.off += int64(len(b))
}

// encode writes v in thrift compact encoding.
func (w *fileWriter) encode(v any) error {
	w.hdr.Reset()
	if err := w.henc.Encode(v); err != nil {
		return fmt.Errorf("encode parquet %T: %w", v, err)
	}
	w.put(w.hdr.Bytes())
	return nil
}

// gather collects the rows keys of p into the column buffers in one
// pass, row by row, so that each row's record and strings are read from
// memory once.
func (g *rowGroupEnc) gather(p *part, keys []sortKey) {
	for i := range g.cols {
		c := &g.cols[i]
		c.body, c.cuts, c.n = c.body[:0], c.cuts[:0], 0
		c.ints, c.idx = c.ints[:0], c.idx[:0]
		c.d.reset()
	}
	for i := range g.typeIdx {
		g.typeIdx[i] = -1
	}
	tc := g.bySrc[srcType]
	for _, k := range keys {
		b := p.blocks[k.i>>blockShift]
		r := &b.rows[k.i&(blockRows-1)]
		s := b.s[r.off : r.off+r.ends[numFields-1]]
		lo := uint32(0)
		for f, hi := range r.ends {
			g.bySrc[f].addString(s[lo:hi])
			lo = hi
		}
		if tc.dict {
			i := g.typeIdx[r.typ]
			if i < 0 {
				i = tc.d.index(r.typ.String())
				g.typeIdx[r.typ] = i
			}
			tc.idx = append(tc.idx, i)
		} else {
			tc.addString(r.typ.String())
		}
		g.bySrc[srcSeq].ints = append(g.bySrc[srcSeq].ints, r.seq)
		g.bySrc[srcEventTime].ints = append(g.bySrc[srcEventTime].ints, r.eventTime)
		g.bySrc[srcReceivedTime].ints = append(g.bySrc[srcReceivedTime].ints, r.receivedTime)
		g.bySrc[srcSMTPCode].ints = append(g.bySrc[srcSMTPCode].ints, int64(r.smtpCode))
		g.bySrc[srcSchemaVersion].ints = append(g.bySrc[srcSchemaVersion].ints, SchemaVersion)
	}
}

// writeRowGroup writes the encoded column chunks of g, a row group of
// rows rows, one after the other.
func (w *fileWriter) writeRowGroup(g *rowGroupEnc, rows int) {
	rg := format.RowGroup{
		NumRows: int64(rows), FileOffset: w.off, SortingColumns: w.t.sort,
		Ordinal: int16(len(w.rowGroups)),
		Columns: make([]format.ColumnChunk, len(g.cols)),
	}
	for i := range g.cols {
		c := &g.cols[i]
		c.place(w.off)
		w.put(c.out)
		w.colIdx = append(w.colIdx, c.ci.ci)
		w.offIdx = append(w.offIdx, c.ci.oi)
		cc := c.cc
		rg.Columns[i] = cc
		rg.TotalByteSize += cc.MetaData.TotalUncompressedSize
		rg.TotalCompressedSize += cc.MetaData.TotalCompressedSize
	}
	w.rowGroups = append(w.rowGroups, rg)
}

// encodeChunks encodes every column's chunk of the row group into its
// own buffer, on up to workers goroutines. A file is otherwise
// written by one goroutine, and a step's events usually fall into one or
// two hours: without this, exporting a log written in time order (the
// common case) kept one core busy, not two.
func (g *rowGroupEnc) encodeChunks(codec *zstdCodec, rows, workers int) error {
	var next atomic.Int32
	var wg sync.WaitGroup
	for range min(workers, len(g.cols)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(g.cols) {
					return
				}
				c := &g.cols[i]
				c.out = c.out[:0]
				c.cc, c.err = c.writeChunk(codec, rows)
			}
		}()
	}
	wg.Wait()
	for i := range g.cols {
		if err := g.cols[i].err; err != nil {
			return err
		}
	}
	return nil
}

// place moves the chunk's offsets, relative to its start, to base: where
// the chunk starts in the file.
func (c *colBuf) place(base int64) {
	c.cc.FileOffset += base
	c.cc.MetaData.DataPageOffset += base
	if c.dict {
		c.cc.MetaData.DictionaryPageOffset += base
	}
	for j := range c.ci.oi.PageLocations {
		c.ci.oi.PageLocations[j].Offset += base
	}
}

// off is the size of the chunk encoded so far.
func (c *colBuf) off() int64 { return int64(len(c.out)) }

// encode appends v to the chunk in thrift compact encoding.
func (c *colBuf) encode(v any) error {
	c.hdr.Reset()
	if err := c.henc.Encode(v); err != nil {
		return fmt.Errorf("encode parquet %T: %w", v, err)
	}
	c.out = append(c.out, c.hdr.Bytes()...)
	return nil
}

// addString adds the next value of a BYTE_ARRAY column.
func (c *colBuf) addString(s string) {
	if c.dict {
		c.idx = append(c.idx, c.d.index(s))
		return
	}
	if c.n == 0 {
		c.lo, c.hi = s, s
	} else if s < c.lo {
		c.lo = s
	} else if s > c.hi {
		c.hi = s
	}
	c.body = binary.LittleEndian.AppendUint32(c.body, uint32(len(s)))
	c.body = append(c.body, s...)
	c.n++
	start := 0
	if len(c.cuts) > 0 {
		start = c.cuts[len(c.cuts)-1].end
	}
	if len(c.body)-start >= pageBytes {
		c.cut()
	}
}

// cut ends the page being filled of a plain BYTE_ARRAY column.
func (c *colBuf) cut() {
	c.cuts = append(c.cuts, cut{end: len(c.body), rows: c.n, lo: bytesOf(c.lo), hi: bytesOf(c.hi)})
	c.n = 0
}

// chunkIdx is the page index and metadata of the column chunk being written.
type chunkIdx struct {
	meta   format.ColumnMetaData
	ci     format.ColumnIndex
	oi     format.OffsetIndex
	rows   int64 // rows in the pages written so far
	npages int32
}

// writeChunk encodes the buffered values of column c as one column chunk
// into c.out, with offsets relative to its start (see place).
func (c *colBuf) writeChunk(codec *zstdCodec, rows int) (format.ColumnChunk, error) {
	ch := &c.ci
	*ch = chunkIdx{meta: c.meta}
	ch.meta.NumValues = int64(rows)
	start := c.off()
	var err error
	switch {
	case c.dict:
		err = c.writeDictPages(codec)
	case c.typ == format.ByteArray:
		if c.n > 0 || len(c.cuts) == 0 {
			c.cut()
		}
		ch.meta.DataPageOffset = c.off()
		from := 0
		for _, k := range c.cuts {
			if err = c.writePage(codec, dataPageHeader(k.rows, format.Plain), c.body[from:k.end], k.rows, k.lo, k.hi); err != nil {
				break
			}
			from = k.end
		}
	default:
		ch.meta.DataPageOffset = c.off()
		err = c.writeIntPages(codec)
	}
	if err != nil {
		return format.ColumnChunk{}, err
	}
	// In page type order, as parquet-go sorts them.
	ch.meta.EncodingStats = append(ch.meta.EncodingStats, format.PageEncodingStats{
		PageType: format.DataPage, Encoding: dataEncoding(c.dict), Count: ch.npages,
	})
	if c.dict {
		ch.meta.EncodingStats = append(ch.meta.EncodingStats, format.PageEncodingStats{
			PageType: format.DictionaryPage, Encoding: format.Plain, Count: 1,
		})
	}
	ch.meta.Statistics = chunkStats(c.typ, &ch.ci)
	ch.ci.BoundaryOrder = boundaryOrder(c.typ, &ch.ci)
	if c.typ == format.ByteArray {
		for i := range ch.ci.MinValues {
			ch.ci.MinValues[i] = truncateMin(ch.ci.MinValues[i])
			ch.ci.MaxValues[i] = truncateMax(ch.ci.MaxValues[i])
		}
	}
	return format.ColumnChunk{FileOffset: start, MetaData: ch.meta}, nil
}

func dataEncoding(dict bool) format.Encoding {
	if dict {
		return format.RLEDictionary
	}
	return format.Plain
}

// writePage compresses body and writes it as a page with header h. Data
// pages are recorded in the chunk's offset and column indexes with their
// bounds min and max (plain encoded, without length prefix).
func (c *colBuf) writePage(codec *zstdCodec, h *format.PageHeader, body []byte, rows int, min, max []byte) error {
	ch := &c.ci
	z, err := codec.Encode(c.zbody[:0], body)
	if err != nil {
		return fmt.Errorf("compress parquet page: %w", err)
	}
	c.zbody = z
	h.UncompressedPageSize = int32(len(body))
	h.CompressedPageSize = int32(len(z))
	h.CRC = int32(crc32.ChecksumIEEE(z))
	off := c.off()
	if err := c.encode(h); err != nil {
		return err
	}
	c.out = append(c.out, z...)
	hlen := c.off() - off - int64(len(z))
	ch.meta.TotalUncompressedSize += hlen + int64(len(body))
	ch.meta.TotalCompressedSize += c.off() - off
	if h.Type != format.DataPage {
		return nil
	}
	ch.oi.PageLocations = append(ch.oi.PageLocations, format.PageLocation{
		Offset: off, CompressedPageSize: int32(c.off() - off), FirstRowIndex: ch.rows,
	})
	ch.ci.NullPages = append(ch.ci.NullPages, false)
	ch.ci.NullCounts = append(ch.ci.NullCounts, 0)
	ch.ci.MinValues = append(ch.ci.MinValues, min)
	ch.ci.MaxValues = append(ch.ci.MaxValues, max)
	ch.rows += int64(rows)
	ch.npages++
	return nil
}

func dataPageHeader(n int, enc format.Encoding) *format.PageHeader {
	h := &format.PageHeader{Type: format.DataPage}
	h.DataPageHeader = thrift.New(format.DataPageHeader{
		NumValues: int32(n), Encoding: enc,
		DefinitionLevelEncoding: format.RLE, RepetitionLevelEncoding: format.RLE,
	})
	return h
}

// bytesOf copies s; an empty s gives an empty, non-nil slice, which the
// thrift encoder writes (a nil one would mean "no statistic").
func bytesOf(s string) []byte { return append(make([]byte, 0, len(s)), s...) }

// plainInt appends v in the physical type typ (INT32 or INT64).
func plainInt(b []byte, typ format.Type, v int64) []byte {
	if typ == format.Int32 {
		return binary.LittleEndian.AppendUint32(b, uint32(int32(v)))
	}
	return binary.LittleEndian.AppendUint64(b, uint64(v))
}

// writeIntPages writes the PLAIN INT64 or INT32 pages of c.
func (c *colBuf) writeIntPages(codec *zstdCodec) error {
	size := 8
	if c.typ == format.Int32 {
		size = 4
	}
	vals := c.ints
	for len(vals) > 0 {
		n := min(len(vals), pageBytes/size)
		body := c.body[:0]
		lo, hi := vals[0], vals[0]
		for _, v := range vals[:n] {
			lo, hi = min(lo, v), max(hi, v)
			body = plainInt(body, c.typ, v)
		}
		c.body = body
		if err := c.writePage(codec, dataPageHeader(n, format.Plain), body, n, plainInt(nil, c.typ, lo), plainInt(nil, c.typ, hi)); err != nil {
			return err
		}
		vals = vals[n:]
	}
	return nil
}

// writeDictPages writes a dictionary page of the chunk's distinct values,
// then data pages of RLE_DICTIONARY indexes.
func (c *colBuf) writeDictPages(codec *zstdCodec) error {
	d := &c.d
	if c.typ != format.ByteArray {
		// Integer dictionaries hold their values as plain-encoded
		// strings, so that one dict serves both; a value is converted
		// only when it differs from the previous row's.
		var (
			last  int64
			lastS string
		)
		for j, v := range c.ints {
			if j == 0 || v != last {
				last, lastS = v, string(plainInt(nil, c.typ, v))
			}
			c.idx = append(c.idx, d.index(lastS))
		}
	}
	c.ci.meta.DictionaryPageOffset = c.off()
	body := c.body[:0]
	for _, v := range d.vals {
		if c.typ == format.ByteArray {
			body = binary.LittleEndian.AppendUint32(body, uint32(len(v)))
		}
		body = append(body, v...)
	}
	c.body = body
	h := &format.PageHeader{Type: format.DictionaryPage}
	h.DictionaryPageHeader = thrift.New(format.DictionaryPageHeader{NumValues: int32(len(d.vals)), Encoding: format.Plain})
	if err := c.writePage(codec, h, body, 0, nil, nil); err != nil {
		return err
	}
	c.ci.meta.DataPageOffset = c.off()
	var enc rle.DictionaryEncoding
	idx := c.idx
	for page := 0; len(idx) > 0; page++ {
		n := min(len(idx), pageBytes/4)
		lo, hi := d.bounds(c.typ, idx[:n], page)
		body, err := enc.EncodeInt32(c.body[:0], idx[:n])
		if err != nil {
			return fmt.Errorf("encode dictionary indexes: %w", err)
		}
		c.body = body
		if err := c.writePage(codec, dataPageHeader(n, format.RLEDictionary), body, n, bytesOf(lo), bytesOf(hi)); err != nil {
			return err
		}
		idx = idx[n:]
	}
	return nil
}

// dict is a column chunk's dictionary: its distinct values in order of
// first appearance. Most lookups hit the previous row's value (rows are
// sorted by campaign, and many columns follow the campaign); most others
// are of a few values that alternate from row to row (event names,
// recipient domains), which recent finds with one comparison; a map is
// only built past a few values.
type dict struct {
	vals   []string
	m      map[string]int32 // once len(vals) > dictLinear
	last   int32            // index of the previous value; -1 for none
	recent [64]int32        // by recentSlot, the index + 1 of a value with that slot
	pageOf []int32          // per value, the last page (+1) that used it
}

const dictLinear = 8

func (d *dict) reset() {
	clear(d.vals)
	d.vals, d.last = d.vals[:0], -1
	clear(d.recent[:])
	clear(d.m)
}

// recentSlot hashes a value's length and first and last bytes, which tell
// apart most values of a small vocabulary.
func recentSlot(s string) int {
	h := uint(len(s))
	if len(s) > 0 {
		h = h*31 + uint(s[0])
		h = h*31 + uint(s[len(s)-1])
	}
	return int(h % 64)
}

func (d *dict) index(s string) int32 {
	if d.last >= 0 && d.vals[d.last] == s {
		return d.last
	}
	slot := &d.recent[recentSlot(s)]
	if i := *slot - 1; i >= 0 && d.vals[i] == s {
		d.last = i
		return i
	}
	i := int32(-1)
	if len(d.vals) <= dictLinear {
		for j, v := range d.vals {
			if v == s {
				i = int32(j)
				break
			}
		}
	} else if j, ok := d.m[s]; ok {
		i = j
	}
	if i < 0 {
		i = int32(len(d.vals))
		d.vals = append(d.vals, s)
		if len(d.vals) > dictLinear {
			if d.m == nil {
				d.m = map[string]int32{}
			}
			if len(d.m) == 0 {
				for j, v := range d.vals {
					d.m[v] = int32(j)
				}
			} else {
				d.m[s] = i
			}
		}
	}
	*slot = i + 1
	d.last = i
	return i
}

// bounds returns the least and greatest values among the indexes idx of
// page number page of the chunk, comparing each distinct value once.
func (d *dict) bounds(typ format.Type, idx []int32, page int) (lo, hi string) {
	if len(d.pageOf) < len(d.vals) {
		d.pageOf = make([]int32, len(d.vals)+len(d.vals)/2)
	}
	mark := int32(page + 1)
	if page == 0 {
		clear(d.pageOf)
	}
	for _, i := range idx {
		d.pageOf[i] = mark
	}
	first := true
	for i, v := range d.vals {
		if d.pageOf[i] != mark {
			continue
		}
		if first {
			lo, hi, first = v, v, false
		} else if compareStat(typ, v, lo) < 0 {
			lo = v
		} else if compareStat(typ, v, hi) > 0 {
			hi = v
		}
	}
	return lo, hi
}

// columnIndexBytes is the longest string bound in a column index, as in
// parquet-go (parquet.ColumnIndexSizeLimit): a longer minimum is cut to
// this prefix, a longer maximum is cut and its last byte incremented, so
// they remain bounds. The chunk statistics keep the exact values.
const columnIndexBytes = 16

func truncateMin(b []byte) []byte {
	if len(b) > columnIndexBytes {
		return b[:columnIndexBytes:columnIndexBytes]
	}
	return b
}

func truncateMax(b []byte) []byte {
	if len(b) <= columnIndexBytes {
		return b
	}
	t := slices.Clone(b[:columnIndexBytes])
	for i := len(t) - 1; i >= 0; i-- {
		if t[i]++; t[i] != 0 {
			return t
		}
	}
	// All 0xff: parquet-go (after parquet-java's BinaryTruncator) keeps
	// the prefix of 0xff bytes.
	for i := range t {
		t[i] = 0xff
	}
	return t
}

// chunkStats returns the chunk's statistics from its pages' bounds.
func chunkStats(typ format.Type, ci *format.ColumnIndex) format.Statistics {
	var st format.Statistics
	for i := range ci.MinValues {
		if i == 0 || compareStat(typ, string(ci.MinValues[i]), string(st.MinValue)) < 0 {
			st.MinValue = ci.MinValues[i]
		}
		if i == 0 || compareStat(typ, string(ci.MaxValues[i]), string(st.MaxValue)) > 0 {
			st.MaxValue = ci.MaxValues[i]
		}
	}
	return st
}

// boundaryOrder reports how the pages' bounds are ordered, as the column
// index records it; like parquet-go, a single page is unordered.
func boundaryOrder(typ format.Type, ci *format.ColumnIndex) format.BoundaryOrder {
	if len(ci.MinValues) < 2 {
		return format.Unordered
	}
	asc, desc := true, true
	for i := 1; i < len(ci.MinValues); i++ {
		cmin := compareStat(typ, string(ci.MinValues[i-1]), string(ci.MinValues[i]))
		cmax := compareStat(typ, string(ci.MaxValues[i-1]), string(ci.MaxValues[i]))
		asc = asc && cmin <= 0 && cmax <= 0
		desc = desc && cmin >= 0 && cmax >= 0
	}
	switch {
	case asc:
		return format.Ascending
	case desc:
		return format.Descending
	}
	return format.Unordered
}

// compareStat compares two plain-encoded statistics values of a column:
// signed integers, or strings byte by byte.
func compareStat(typ format.Type, a, b string) int {
	switch typ {
	case format.Int64:
		return cmp.Compare(int64(leUint64(a)), int64(leUint64(b)))
	case format.Int32:
		return cmp.Compare(int32(leUint64(a)), int32(leUint64(b)))
	}
	return strings.Compare(a, b)
}

// leUint64 decodes up to 8 little-endian bytes.
func leUint64(s string) uint64 {
	var v uint64
	for i := len(s) - 1; i >= 0; i-- {
		v = v<<8 | uint64(s[i])
	}
	return v
}

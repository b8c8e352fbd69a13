// Package export writes the event log, and snapshots of the engine's
// aggregates, as Parquet files that DuckDB and Spark read directly.
//
// # Layout
//
//	<dir>/events/date=YYYY-MM-DD/hour=HH/part-<first seq>-<last seq>.parquet
//	<dir>/windows/windows-<seq>.parquet   time-series windows of every campaign as of seq
//	<dir>/funnels/funnels-<seq>.parquet   funnel of every campaign as of seq (one row per stage/outcome)
//	<dir>/_manifest.jsonl                 every file written (GET /v1/exports)
//
// Events are partitioned by the UTC hour of their event time. Each export
// step writes one file per partition it touches, named by the smallest and
// largest sequence of its rows; rows inside a file are sorted by campaign,
// event time and seq (recorded as the row groups' sorting columns), so
// min/max statistics let readers skip row groups by campaign and time. The
// aggregate files are snapshots: each export replaces the previous ones.
//
// # Schema
//
// EventRow, WindowRow and FunnelRow define the columns: flat, legal Spark
// names, signed integers (seq INT64, smtp_code INT32), UTF-8 strings, times
// as INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true). Every column names its
// encoding, PLAIN or RLE_DICTIONARY (no DELTA_* encodings, which older Spark
// readers reject); data pages are version 1; every column is zstd
// compressed; column statistics are written. Row groups hold at most
// Config.RowGroupRows rows (default 131,072, see Config). The schema version
// is in the key-value metadata (SchemaVersionKey) and in the schema_version
// column; changes are additive only.
//
// The events files are encoded column by column by this package
// (eventfile.go), for speed; everything a reader interprets beyond the
// pages (schema elements and logical types, encodings, codec, sorting
// columns, key-value metadata) is copied from a one-row file that
// parquet-go writes from EventRow's tags, so EventRow remains the schema's
// only definition. The snapshot files are written by parquet-go directly.
// Up to Config.Workers files are encoded at once, and within a file its
// row groups, and within a row group its column chunks, are encoded
// concurrently into memory and then written in order: the bytes do not
// depend on the concurrency.
//
// # Atomicity
//
// A file is written under a temp name in its final directory (".<name>.tmp":
// the leading dot hides it from Spark, the suffix from '*.parquet' globs),
// the writer is closed (footer), the file fsynced, renamed into place and
// the directory fsynced. New starts remove leftover temp files. No reader
// ever sees a partial file.
//
// # Exactly once
//
// Progress lives in the source log as two checkpoints: CheckpointName (the
// last exported seq, c) and IntentName (the end of the step in progress, i).
// A step is:
//
//  1. if i > c, the step (c, i] is pending: redo it as it is; otherwise
//     choose to = min(LastSeq at the run's start, c+ChunkEvents) and
//     durably record i = to before writing anything;
//  2. read the events c+1..i, write and rename one file per partition;
//  3. append the files to the manifest (fsynced);
//  4. advance c to i.
//
// A run reads the events of the next step while it writes the current
// one; reading writes nothing, so the next step's intent is still recorded
// only once the current step's checkpoint has moved.
//
// A crash before 4 leaves c < i, and the redo covers exactly the same range
// from the immutable log, so it produces the same partitions and the same
// file names: renaming over a file already in place replaces it with an
// identical one, and manifest records for a path already listed are merged.
// No later step starts before c = i, so steps never overlap and never leave
// a gap: every event up to c is in exactly one visible file, and every
// visible file is in the manifest once its step completes. New redoes a
// pending step before returning.
//
// The aggregate snapshots are not part of this argument: they are rewritten
// whole (idempotently, named by the checkpoint they follow) whenever the
// checkpoint has moved, and reflect the engine's state at that moment.
package export

// Package storage is mailfunnel's durable event log, kept in an embedded
// Badger database.
//
// # Contract
//
// Append returns only after the batch's events are on disk (the Badger
// value log and WAL are fsynced): the ingest layer acknowledges a webhook
// only then, so nothing acknowledged is ever lost, even on kill -9 or power
// loss. Concurrent Append calls are merged by one committer goroutine into
// a single Badger transaction and a single fsync (group commit), so many
// parallel single-event posts share the cost of one sync. The stages are
// pipelined: while Badger inserts group k, the committer checks group
// k+1's hashes against the dedupe index (which already holds group k's),
// and a separate syncer fsyncs and answers the groups before; a group is still
// acknowledged only after an fsync that covers it, and its sequences are
// published to readers before that.
//
// Every accepted event gets a sequence number: consecutive, starting at 1,
// never reused, assigned in commit order. Readers (the engine, the exporter)
// call ReadFrom with the next sequence they want and never see a gap: Badger
// publishes transactions in commit order.
//
// Deduplication: an event whose canonical provider fields hash to a value
// seen within the dedupe horizon (default 7 days) is not stored again and is
// reported in Result.Duplicates. The hash covers the provider's own fields
// (not the receive time, and not the event time when the provider sent none),
// so a redelivery counts once. The dedupe index is not in Badger: the
// hashes of the newest events (up to about a million) are in memory and
// are rebuilt from the log before the first append after Open (a log
// opened only to be read leaves the index alone), older ones are in
// sorted run files
// (dedupeindex.go), written once the log has synced their events and
// merged as they accumulate. Bloom filters of the stored hashes spare
// most new events their lookup in the index (dedupefilter.go); they never
// answer "new" for a stored hash, so they change no result, only the cost.
//
// # Key layout
//
//	'l' + uint64 BE first seq   -> entry: uvarint n, then n x (uvarint len, event.Append encoding);
//	                               the events of one group commit, seqs first..first+n-1
//	'x' + uint64 BE id          -> dead letter (JSON)
//	'c' + name                  -> uint64 BE checkpoint of a consumer (the exporter)
//
// Big-endian sequence keys sort in log order, so a log scan is one Badger
// iterator. (Builds before the dedupe index kept a 'd' + hash key per
// event, with a TTL; Open moves them into a run and drops them.)
//
// The dedupe index's runs are files in the subdirectory dedupe/ of the
// Badger directory: "<first seq>-<last seq>.run" (16 hex digits each),
// each the sorted (hash, expiry) pairs of the events of that range, with
// a sparse index and a checksum (see dedupeRun). A run goes whole once
// every hash in it has expired, so the index stays bounded by the
// horizon's traffic, and it outlives the log entries Trim removes.
//
// # Invariants the engine relies on
//
// Events are immutable once appended; ReadFrom yields them in sequence order
// with Seq set; LastSeq only grows; Changed is closed after every commit that
// added events, so a follower wakes without polling.
package storage

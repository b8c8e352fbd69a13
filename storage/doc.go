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
// k+1's dedupe keys (against the store and group k's hashes), and a
// separate syncer fsyncs and answers the groups before; a group is still
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
// so a redelivery counts once. Bloom filters of the stored hashes spare
// most new events their lookup in the index (dedupefilter.go); they never
// answer "new" for a stored hash, so they change no result, only the cost.
//
// # Key layout
//
//	'l' + uint64 BE first seq   -> entry: uvarint n, then n x (uvarint len, event.Append encoding);
//	                               the events of one group commit, seqs first..first+n-1
//	'd' + 16-byte xxh3 hash     -> uint64 BE seq, with a Badger TTL of the dedupe horizon
//	'x' + uint64 BE id          -> dead letter (JSON)
//	'c' + name                  -> uint64 BE checkpoint of a consumer (the exporter)
//
// Big-endian sequence keys sort in log order, so a log scan is one Badger
// iterator. Dedupe keys expire with Badger's TTL and are dropped by
// compaction, so the index stays bounded by the horizon's traffic.
//
// # Invariants the engine relies on
//
// Events are immutable once appended; ReadFrom yields them in sequence order
// with Seq set; LastSeq only grows; Changed is closed after every commit that
// added events, so a follower wakes without polling.
package storage

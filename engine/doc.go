// Package engine follows the storage log and keeps mailfunnel's aggregates
// current: per-campaign funnels with exact distinct-recipient counts, event
// counts in event-time windows with watermarks and late-event revisions
// (watermark.go), distinct recipients per window (distinct.go), bounce
// groups, per-domain deliverability, suppressions, and the campaign
// catalogue. It can re-derive all of it from the log while serving
// (replay.go).
//
// Its contract: it reads the log (storage) and its own state store, and
// nothing else (a bulk catch-up also keeps unlinked temporary files beside
// the state directory, spill.go); the query and export packages read it through its exported
// methods, which answer from committed state only.
//
// # Funnel semantics (the contract)
//
// A campaign is identified by (source, account, campaign). Recipients are
// compared after trimming white space and lower-casing. The stages are
// sent -> delivered -> opened -> clicked, and reaching a stage implies the
// earlier ones: a click implies an open, a delivery and a send; an open
// implies a delivery and a send; every event except subscribed and other
// implies a send. Outcomes (soft_bounced, hard_bounced, undelivered,
// unsubscribed, complained) are reached by their own event type only; they
// imply a send but no delivery.
//
// For each (campaign, recipient, stage or outcome) the engine keeps the
// earliest event time of any event that brought the recipient there: "the
// event that first brought them there" is ordered by event time, not by
// arrival, because providers deliver out of order and a client cannot know
// the server's arrival order. A funnel query with from/to counts a recipient
// at a stage when that earliest time lies in [from, to); without a range it
// counts every recipient that reached the stage. Event counts per type are
// counts of events whose event time lies in the range.
//
// # State and exactly-once
//
// State lives in its own Badger database (the state store), apart from the
// log. The engine applies events in log order in batches, and writes each
// batch's dirty state together with the checkpoint (the last applied
// sequence) in one Badger transaction. The one exception is the
// distinct-recipient sketches, which are idempotent and written at most
// once a second with their own sequence (distinct.go). After a crash at any point the state
// store holds exactly the effect of the events up to its checkpoint, and the
// engine resumes from there: nothing is lost or counted twice. Given the same
// log, the state is a deterministic function of it, so a rebuild produces the
// same answers as the incremental path. A rebuild or replay builds a new
// store in bulk mode (bulk.go), which writes each record once and the
// checkpoint last: a store nobody reads until it is complete, and that a
// crash discards, needs no atomic batches.
//
// # Key layout of the state store
//
//	'V'                                        -> uvarint format version (format.go)
//	'C'                                        -> uint64 BE checkpoint (last applied seq)
//	'k' source 0 campaign 0 account            -> uint32 BE campaign id
//	'K' uint32 BE id                           -> campaign record (JSON)
//	'r' uint32 BE id + normalized recipient    -> recipient record: reached mask + earliest times, first bounce per group (format.go)
//	'n' uint32 BE id, metric, level, bucket    -> count (level 'T' total, 'm' minute with sub-minute detail)
//	'w' source                                 -> watermark: newest event time, late events (watermark.go)
//	'h' id, metric, minute; 'H'                -> HyperLogLog sketches and their sequence (distinct.go)
//	'G' 'g'                                    -> bounce groups (bounces.go)
//	'D' 'd', and 'r' with id 0                 -> per-domain deliverability (domains.go)
//	'S' 'L', and 'r' with id 0                 -> suppressions and the lift journal (suppression.go)
//
// The minute level with its sub-minute detail lets a range query be
// answered exactly from whole minutes plus the detail of its two partial
// edge minutes. Per-recipient state is read through a bounded cache of two
// tiers, decoded records for the current batch and encoded ones for the
// rest (reccache.go), so memory does not grow with the number of
// recipients.
package engine

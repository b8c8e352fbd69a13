package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/mailfunnel/mailfunnel/event"
)

// Result reports what an Append stored.
type Result struct {
	Accepted   int    // events newly stored
	Duplicates int    // events already in the log (or earlier in the batch) within the dedupe horizon
	FirstSeq   uint64 // sequence of the first stored event; 0 when Accepted is 0
	LastSeq    uint64 // sequence of the last stored event; 0 when Accepted is 0
}

type appendReq struct {
	events []event.Event
	hashes []Hash
	res    Result
	err    error
	done   chan struct{}
}

// Append stores events durably and returns after they are fsynced. It
// assigns Seq in place in the caller's slice (so callers can see which seq
// each stored event got; duplicates keep Seq 0). The log does not retain
// the slice after returning. Append may be called concurrently: calls are
// merged into one commit. If ctx ends while the commit is in flight, Append
// returns ctx's error but the events may still be stored; a redelivery is
// then counted as a duplicate.
func (l *Log) Append(ctx context.Context, events []event.Event) (Result, error) {
	if l.closed.Load() {
		return Result{}, ErrClosed
	}
	if len(events) == 0 {
		return Result{}, nil
	}
	if len(events) > l.cfg.MaxBatchEvents {
		return Result{}, fmt.Errorf("%w: %d events, limit %d", ErrTooLarge, len(events), l.cfg.MaxBatchEvents)
	}
	// Hashing here, on the caller's goroutine, spreads the CPU over all
	// request handlers instead of the single committer.
	r := &appendReq{events: events, hashes: make([]Hash, len(events)), done: make(chan struct{})}
	for i := range events {
		events[i].Seq = 0
		r.hashes[i] = HashEvent(&events[i])
	}
	select {
	case l.reqs <- r:
	default:
		t := time.NewTimer(l.cfg.QueueTimeout)
		select {
		case l.reqs <- r:
			t.Stop()
		case <-t.C:
			return Result{}, ErrOverloaded
		case <-ctx.Done():
			t.Stop()
			return Result{}, ctxErr(ctx)
		case <-l.stop:
			t.Stop()
			return Result{}, ErrClosed
		}
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, ctxErr(ctx)
	}
}

// commitLoop is the single writer. It takes every request waiting in the
// queue (up to MaxGroupEvents), commits them in one transaction, syncs once
// and then answers them all: this is the group commit that lets hundreds of
// parallel single-event posts share one fsync.
func (l *Log) commitLoop() {
	var group []*appendReq
	for {
		group = group[:0]
		select {
		case r := <-l.reqs:
			group = append(group, r)
		case <-l.stop:
			// Commit what is already queued: those callers are waiting.
			for {
				select {
				case r := <-l.reqs:
					l.commit([]*appendReq{r})
				default:
					return
				}
			}
		}
		n := len(group[0].events)
	drain:
		for n < l.cfg.MaxGroupEvents {
			select {
			case r := <-l.reqs:
				group = append(group, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		l.commit(group)
	}
}

func (l *Log) commit(group []*appendReq) {
	err := l.commitGroup(group)
	for _, r := range group {
		if err != nil {
			r.err = err
			r.res = Result{}
		}
		close(r.done)
	}
}

func (l *Log) commitGroup(group []*appendReq) error {
	next := l.lastSeq.Load() + 1
	first := next
	seen := make(map[Hash]struct{})
	var count int

	rtxn := l.db.NewTransaction(false)
	for _, r := range group {
		for i := range r.events {
			h := r.hashes[i]
			if _, dup := seen[h]; dup {
				r.res.Duplicates++
				continue
			}
			_, err := rtxn.Get(h.key())
			if err == nil {
				r.res.Duplicates++
				continue
			}
			if !errors.Is(err, badger.ErrKeyNotFound) {
				rtxn.Discard()
				return fmt.Errorf("read dedupe index: %w", err)
			}
			seen[h] = struct{}{}
			e := &r.events[i]
			e.Seq = next
			if r.res.Accepted == 0 {
				r.res.FirstSeq = next
			}
			r.res.Accepted++
			r.res.LastSeq = next
			next++
			count++
		}
	}
	rtxn.Discard()
	if count == 0 {
		return nil
	}

	// Each log entry (count, then each event length-prefixed) and its
	// dedupe keys commit in one transaction. A group larger than
	// entryEvents is split into several transactions, which keeps each under
	// Badger's transaction size limit; the group is still acknowledged only
	// after the one sync that covers all of them. A crash between them
	// leaves a prefix stored: its redelivery counts those as duplicates and
	// stores the rest, so nothing is lost or doubled.
	var body, buf []byte
	wtxn := l.db.NewTransaction(true)
	defer func() { wtxn.Discard() }()
	chunkFirst, n, committed := first, 0, first-1
	flush := func() error {
		if n == 0 {
			return nil
		}
		entry := binary.AppendUvarint(make([]byte, 0, len(body)+binary.MaxVarintLen64), uint64(n))
		entry = append(entry, body...)
		if err := wtxn.Set(seqKey(prefixLog, chunkFirst), entry); err != nil {
			return fmt.Errorf("stage log entry: %w", err)
		}
		if err := wtxn.Commit(); err != nil {
			return fmt.Errorf("commit log entry at seq %d: %w", chunkFirst, err)
		}
		committed = chunkFirst + uint64(n) - 1
		wtxn = l.db.NewTransaction(true)
		chunkFirst += uint64(n)
		n, body = 0, body[:0]
		return nil
	}
	fail := func(err error) error {
		if committed >= first {
			// Part of the group is visible to readers: seqs continue after
			// it, but no caller is acknowledged.
			l.lastSeq.Store(committed)
			l.notify()
		}
		l.unassign(group)
		return err
	}
	for _, r := range group {
		for i := range r.events {
			e := &r.events[i]
			if e.Seq == 0 {
				continue
			}
			buf = event.Append(buf[:0], e)
			body = binary.AppendUvarint(body, uint64(len(buf)))
			body = append(body, buf...)
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], e.Seq)
			if err := wtxn.SetEntry(badger.NewEntry(r.hashes[i].key(), v[:]).WithTTL(l.cfg.DedupeHorizon)); err != nil {
				return fail(fmt.Errorf("stage dedupe key: %w", err))
			}
			if n++; n == entryEvents {
				if err := flush(); err != nil {
					return fail(err)
				}
			}
		}
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	if !l.cfg.NoSync {
		if err := l.db.Sync(); err != nil {
			return fail(fmt.Errorf("sync log at seq %d: %w", first, err))
		}
	}
	l.lastSeq.Store(next - 1)
	l.notify()
	return nil
}

// entryEvents bounds the events of one log entry (and so of one Badger
// transaction, with their dedupe keys).
const entryEvents = 10_000

// unassign clears results of a group whose commit failed, so that no caller
// mistakes the seqs for stored events.
func (l *Log) unassign(group []*appendReq) {
	for _, r := range group {
		for i := range r.events {
			r.events[i].Seq = 0
		}
		r.res = Result{}
	}
}

// AppendCtx is a convenience for tests and tools that append one batch with
// a background context.
func (l *Log) AppendCtx(events ...event.Event) (Result, error) {
	return l.Append(context.Background(), events)
}

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
// queue (up to MaxGroupEvents) and commits them in one transaction; this is
// the group commit that lets hundreds of parallel single-event posts share
// one fsync. The fsync and the answers are the syncer's: while it syncs one
// group, commitLoop already commits the next, so the disk's sync latency
// and the CPU work of a group overlap instead of adding up.
func (l *Log) commitLoop() {
	synced := make(chan *pendingGroup, syncQueue)
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		l.syncLoop(synced)
	}()
	defer func() {
		close(synced)
		<-syncDone
	}()
	l.nextSeq = l.lastSeq.Load() + 1
	var group []*appendReq
	for {
		group = nil
		select {
		case r := <-l.reqs:
			group = append(group, r)
		case <-l.stop:
			// Commit what is already queued: those callers are waiting.
			for {
				select {
				case r := <-l.reqs:
					synced <- l.commitGroup([]*appendReq{r})
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
		synced <- l.commitGroup(group)
	}
}

// syncQueue bounds the committed groups waiting for their sync.
const syncQueue = 64

// pendingGroup is a committed (or failed) group on its way to the syncer.
type pendingGroup struct {
	reqs []*appendReq
	// visible is the last sequence readers may see once this group is
	// handled: its end, or after a failure the end of the part that was
	// committed (0: nothing of it).
	visible uint64
	err     error
}

// syncLoop makes committed groups durable and answers their callers, in
// commit order. It takes every group waiting, syncs once for all of them,
// and only then publishes their sequences to readers (LastSeq) and wakes
// their callers.
func (l *Log) syncLoop(in <-chan *pendingGroup) {
	var batch []*pendingGroup
	for g := range in {
		batch = append(batch[:0], g)
	more:
		for {
			select {
			case g, ok := <-in:
				if !ok {
					break more
				}
				batch = append(batch, g)
			default:
				break more
			}
		}
		// A batch of duplicates only refers to groups synced before.
		stored := false
		for _, g := range batch {
			stored = stored || g.visible > 0
		}
		var syncErr error
		if stored && !l.cfg.NoSync {
			if err := l.db.Sync(); err != nil {
				syncErr = fmt.Errorf("sync log: %w", err)
			}
		}
		// Publish first, then answer: an acknowledged event is readable.
		var visible uint64
		for _, g := range batch {
			visible = max(visible, g.visible)
		}
		if visible > l.lastSeq.Load() {
			l.lastSeq.Store(visible)
			l.notify()
		}
		for _, g := range batch {
			err := g.err
			if err == nil {
				err = syncErr
			}
			if err != nil {
				l.unassign(g.reqs)
			}
			for _, r := range g.reqs {
				r.err = err
				close(r.done)
			}
		}
	}
}

// commitGroup assigns sequences, filters duplicates and commits the
// group's log entries and dedupe keys, without syncing.
func (l *Log) commitGroup(group []*appendReq) *pendingGroup {
	pg := &pendingGroup{reqs: group}
	pg.err = l.writeGroup(group, pg)
	return pg
}

func (l *Log) writeGroup(group []*appendReq, pg *pendingGroup) error {
	next := l.nextSeq
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
			// Part of the group is stored and becomes visible to readers:
			// seqs continue after it, but no caller is acknowledged.
			pg.visible = committed
			l.nextSeq = committed + 1
		}
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
	pg.visible = next - 1
	l.nextSeq = next
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

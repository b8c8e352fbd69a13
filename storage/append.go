package storage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
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
// each stored event got; duplicates keep Seq 0). Append may be called
// concurrently: calls are merged into one commit. If ctx ends first,
// Append returns ctx's error at once, but the events may still be stored
// (a redelivery is then counted as a duplicate), and the committer may
// still read the slice and its strings, and set Seq, after Append
// returned: the caller must leave both alone (ingest copies every string
// out of Fiber's reused buffers). Otherwise the log does not retain the
// slice after returning.
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
	case <-l.exited:
		// Close raced with this call: the request reached the queue after
		// the committer's last look at it, and nobody will answer it.
		// Everything the committer took is answered before it exits.
		select {
		case <-r.done:
			return r.res, r.err
		default:
			return Result{}, ErrClosed
		}
	}
}

// commitLoop is the single writer. It takes every request waiting in the
// queue (up to MaxGroupEvents) and commits them in one transaction; this is
// the group commit that lets hundreds of parallel single-event posts share
// one fsync. Three stages overlap instead of adding up: while Badger's
// writer inserts group k into the memtable, commitLoop already checks group
// k+1's dedupe keys and stages its entry, and the syncer fsyncs and answers
// the groups before k. (The dedupe reads and the memtable inserts are each
// about half of the log's CPU, both cache-miss bound.)
func (l *Log) commitLoop() {
	synced := make(chan *pendingGroup, syncQueue)
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		l.syncLoop(synced)
	}()
	var inflight *stagedGroup
	// settle waits for the commit in flight (its callback has handed it to
	// the syncer). A failed commit stored nothing of its last entry:
	// numbering goes on from there, and the caller restages whatever it
	// staged after it.
	settle := func() (failed bool) {
		if inflight == nil {
			return false
		}
		<-inflight.done
		if inflight.err != nil {
			l.nextSeq = inflight.lastFirst
			inflight.unindex(inflight.lastFirst)
			failed = true
		}
		inflight = nil
		return failed
	}
	defer func() {
		settle()
		l.spare.drop()
		if !skipCloseRun && l.tailBuilt {
			// The next Open then reads no events again for the index.
			l.index.freeze(l.nextSeq-1, nil)
		}
		close(synced)
		<-syncDone
	}()
	l.nextSeq = l.lastSeq.Load() + 1
	var group []*appendReq
	for {
		group = nil
		var done <-chan struct{}
		if inflight != nil {
			done = inflight.done
		}
		select {
		case r := <-l.reqs:
			group = append(group, r)
		case <-done:
			settle()
			l.spare.drop()
			continue
		case rep := <-l.persist:
			// A run may hold only committed hashes: nothing in flight.
			settle()
			l.spare.drop()
			if err := l.initTail(); err != nil {
				rep <- err
				continue
			}
			l.index.freeze(l.nextSeq-1, rep)
			continue
		case <-l.stop:
			// Commit what is already queued: those callers are waiting.
			settle()
			// The spare transactions began before that commit and cannot
			// see its keys; with nothing in flight no prevSeen covers them.
			l.spare.drop()
			for {
				select {
				case r := <-l.reqs:
					if err := l.initTail(); err != nil {
						r.err = err
						close(r.done)
						continue
					}
					sg := l.stageGroup([]*appendReq{r})
					sg.commit(synced)
					inflight = sg
					settle()
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
		if n > entryEvents && inflight != nil {
			// A group of several entries commits all but its last before
			// returning: nothing may be in flight before it, or a failure
			// there could leave a hole in the numbering.
			if settle() {
				l.spare.drop()
			}
		}
		if err := l.initTail(); err != nil {
			// Not known which events are stored: answer nothing stored.
			for _, r := range group {
				r.err = err
				close(r.done)
			}
			continue
		}
		if l.index.tail.len() >= l.index.tailKeys || l.nextSeq-l.index.tailFrom >= 2*uint64(l.index.tailKeys) {
			// The tail becomes a run; it may hold only committed hashes.
			if settle() {
				l.spare.drop()
			}
			l.index.freeze(l.nextSeq-1, nil)
		}
		sg := l.stageGroup(group)
		if settle() {
			// The group staged against sequences and dedupe hashes of a
			// commit that failed: stage it again from what is stored.
			sg.discard()
			sg.unindex(sg.first)
			l.unassign(group)
			sg = l.stageGroup(group)
		}
		// Badger starts a transaction only once every commit before it is
		// in the memtable, so the next group's transaction begins now,
		// before this commit is in flight.
		l.spare.begin(l.db)
		sg.commit(synced)
		inflight = sg
	}
}

// spareTxns is the next group's write transaction, begun while no commit
// is in flight. Owned by commitLoop.
type spareTxns struct{ w *badger.Txn }

func (s *spareTxns) begin(db *badger.DB) {
	if s.w == nil {
		s.w = db.NewTransaction(true)
	}
}

// take returns the spare transaction, or a new one.
func (s *spareTxns) take(db *badger.DB) *badger.Txn {
	s.begin(db)
	w := s.w
	s.w = nil
	return w
}

// drop discards the spare transaction: an idle log holds no transaction
// open, which would keep Badger from dropping old versions.
func (s *spareTxns) drop() {
	if s.w != nil {
		s.w.Discard()
	}
	s.w = nil
}

// parallelLookups is the number of dedupe lookups from which a group's
// lookups are split over two goroutines.
const parallelLookups = 1024

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
		if syncErr == nil && visible > l.durable.Load() {
			l.durable.Store(visible)
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

// stagedGroup is a group whose sequences are assigned and whose last log
// entry (with its dedupe keys) is staged in txn, ready to commit.
type stagedGroup struct {
	pg *pendingGroup
	// added lists the hashes the group put in the dedupe index's tail, by
	// sequence, so that a failed commit takes its own back out.
	added     []seqHash
	index     *dedupeIndex
	txn       *badger.Txn // nil when there is nothing (left) to commit
	first     uint64      // the group's first sequence
	lastFirst uint64      // first sequence of the entry in txn
	done      chan struct{}
	err       error
}

// commit starts the commit of the staged entry. When it is in the
// memtable (or failed) the group goes to the syncer at once, not when
// commitLoop next looks, and done is closed. One commit is in flight at a
// time, so groups reach the syncer in order.
func (sg *stagedGroup) commit(synced chan<- *pendingGroup) {
	finish := func(err error) {
		if err != nil {
			sg.err = err
			sg.pg.err = fmt.Errorf("commit log entry at seq %d: %w", sg.lastFirst, err)
			sg.pg.visible = 0
			if sg.lastFirst > sg.first {
				sg.pg.visible = sg.lastFirst - 1 // the entries committed before it
			}
		}
		synced <- sg.pg
		close(sg.done)
	}
	if sg.txn == nil {
		finish(nil)
		return
	}
	txn := sg.txn
	sg.txn = nil
	txn.CommitWith(finish)
}

type seqHash struct {
	seq uint64
	h   Hash
}

// unindex removes from the dedupe index the hashes of the group's events
// from sequence from on, whose commit failed (committer only).
func (sg *stagedGroup) unindex(from uint64) {
	for _, a := range sg.added {
		if a.seq >= from {
			sg.index.remove(a.h)
		}
	}
}

func (sg *stagedGroup) discard() {
	if sg.txn != nil {
		sg.txn.Discard()
		sg.txn = nil
	}
}

// stageGroup assigns sequences, filters duplicates (against the store,
// the group itself and prevSeen, the commit in flight) and stages the
// group's log entries and dedupe keys. Entries before the last (a group of
// more than entryEvents) are committed here; the last is left staged. A
// failure is recorded in the returned group's pendingGroup, with what was
// committed of it.
func (l *Log) stageGroup(group []*appendReq) *stagedGroup {
	sg := &stagedGroup{pg: &pendingGroup{reqs: group}, done: make(chan struct{}), first: l.nextSeq, index: l.index}
	if err := l.writeGroup(group, sg); err != nil {
		sg.discard()
		sg.pg.err = err
	}
	return sg
}

func (l *Log) writeGroup(group []*appendReq, sg *stagedGroup) error {
	pg := sg.pg
	next := l.nextSeq
	first := next
	var count int
	now := time.Now()
	at := l.filters.at(now)
	l.filters.maintain(l.index, at)
	unix := expiryOf(uint64(max(now.Unix(), 0)))
	expires := uint64(now.Add(l.cfg.DedupeHorizon).Unix()) + 1
	exp := expiryOf(expires)

	wtxn := l.spare.take(l.db)
	// An event whose hash the tail holds is a duplicate: of one earlier in
	// the group, in the commit in flight, or stored since the newest run.
	// Otherwise its hash goes into the tail at once (taken out again if
	// it turns out a duplicate, or its commit fails), and it is a
	// candidate: the rest of the index (runs, frozen tails) is asked
	// about those the filters may hold, in hash order, so that
	// consecutive lookups in a run share its blocks.
	x := l.index
	total := 0
	for _, r := range group {
		total += len(r.events)
	}
	stored := make([]bool, total) // by position in the group
	type candidate struct {
		h   Hash
		pos int
	}
	cands := make([]candidate, 0, total)
	pos, fresh := 0, 0
	for _, r := range group {
		for i := range r.events {
			h := r.hashes[i]
			if x.addNew(h, exp, unix) {
				stored[pos] = true
				fresh++
				// Only a hash the filters may hold needs a lookup.
				if l.filters.mayContain(h) {
					cands = append(cands, candidate{h, pos})
				}
			}
			pos++
		}
	}
	// untail takes the group's hashes out of the tail again: nothing of
	// it is stored. Those of candidates found in the runs are no longer
	// marked stored, but are in the tail all the same.
	untail := func() {
		pos := 0
		for _, r := range group {
			for i := range r.events {
				if stored[pos] {
					x.remove(r.hashes[i])
				}
				pos++
			}
		}
		for _, c := range cands {
			if !stored[c.pos] {
				x.remove(c.h)
			}
		}
	}
	l.filters.stats.reads.Add(uint64(len(cands)))
	l.filters.stats.skipped.Add(uint64(fresh - len(cands)))
	slices.SortFunc(cands, func(a, b candidate) int { return bytes.Compare(a.h[:], b.h[:]) })
	// lookup marks the candidates the store already holds (stored[pos],
	// distinct per candidate, so halves may run at once) and returns them.
	lookup := func(cs []candidate) ([]Hash, error) {
		var dups []Hash
		for _, c := range cs {
			found, err := x.containsOld(c.h, unix)
			if err != nil {
				return nil, err
			}
			if found {
				stored[c.pos] = false
				dups = append(dups, c.h)
			}
		}
		return dups, nil
	}
	var dups []Hash
	var err error
	if len(cands) < parallelLookups {
		dups, err = lookup(cands)
	} else {
		// A large group's lookups are a large part of the committer's
		// time, which is the log's serial stage: the two halves (each
		// still in hash order) run on two cores. Lookups only read the
		// runs and frozen tails.
		half := len(cands) / 2
		var dups2 []Hash
		var err2 error
		done := make(chan struct{})
		go func() {
			defer close(done)
			dups2, err2 = lookup(cands[half:])
		}()
		dups, err = lookup(cands[:half])
		<-done
		dups = append(dups, dups2...)
		err = cmp.Or(err, err2)
	}
	if err != nil {
		wtxn.Discard()
		untail()
		return err
	}
	for _, h := range dups {
		x.remove(h)
	}
	pos = 0
	for _, r := range group {
		for i := range r.events {
			if !stored[pos] {
				pos++
				r.res.Duplicates++
				continue
			}
			pos++
			e := &r.events[i]
			e.Seq = next
			// Into the filters before the commit: if it fails, they hold
			// hashes the index lacks, which costs a lookup, never a lost
			// redelivery.
			l.filters.add(r.hashes[i], expires, at)
			sg.added = append(sg.added, seqHash{next, r.hashes[i]})
			if r.res.Accepted == 0 {
				r.res.FirstSeq = next
			}
			r.res.Accepted++
			r.res.LastSeq = next
			next++
			count++
		}
	}
	if count == 0 {
		wtxn.Discard()
		return nil
	}

	// Each log entry (count, then each event length-prefixed) commits in
	// one transaction. A group larger than
	// entryEvents is split into several transactions, which keeps each under
	// Badger's transaction size limit; the group is still acknowledged only
	// after the one sync that covers all of them. A crash between them
	// leaves a prefix stored: its redelivery counts those as duplicates and
	// stores the rest, so nothing is lost or doubled.
	// body starts with room for the entry's event count, which is known
	// only at its end: the entry is then a suffix of body, not a copy.
	const hdr = binary.MaxVarintLen64
	var buf []byte
	body := make([]byte, hdr, hdr+count*256)
	chunkFirst, n, committed := first, 0, first-1
	stage := func() error {
		var cnt [hdr]byte
		k := binary.PutUvarint(cnt[:], uint64(n))
		entry := body[hdr-k:]
		copy(entry, cnt[:k])
		if err := wtxn.Set(seqKey(prefixLog, chunkFirst), entry); err != nil {
			return fmt.Errorf("stage log entry: %w", err)
		}
		return nil
	}
	flush := func() error {
		if err := stage(); err != nil {
			return err
		}
		if err := wtxn.Commit(); err != nil {
			return fmt.Errorf("commit log entry at seq %d: %w", chunkFirst, err)
		}
		committed = chunkFirst + uint64(n) - 1
		wtxn = l.db.NewTransaction(true)
		chunkFirst += uint64(n)
		n, body = 0, body[:hdr] // the commit above is done with it
		return nil
	}
	fail := func(err error) error {
		wtxn.Discard()
		sg.unindex(committed + 1)
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
			// The last entry is left for the caller to commit, so an
			// exactly full one is not flushed here.
			if n++; n == entryEvents && e.Seq != next-1 {
				if err := flush(); err != nil {
					return fail(err)
				}
			}
		}
	}
	if err := stage(); err != nil {
		return fail(err)
	}
	sg.txn, sg.lastFirst = wtxn, chunkFirst
	pg.visible = next - 1
	l.nextSeq = next
	return nil
}

// entryEvents bounds the events of one log entry (and so of one Badger
// transaction).
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

package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mailfunnel/mailfunnel/storage"
)

// Replay re-derives every aggregate from the log while the engine keeps
// serving, then swaps the result in. It is how a classifier change (or a
// changed rule) reaches the data already counted.
//
// A replay always starts at the log's first event: the state of a
// recipient (first reaches, bounce history, suppression) depends on all of
// its earlier events, so re-deriving "from sequence N" would need the
// state as it was at N, which the engine does not keep. The cost is the
// engine's apply rate over the whole log.
//
// The new state is built in <state>.replay by a second engine that follows
// the log like the live one. When it is close to the end, the live engine
// pauses applying (queries go on), the replay applies the rest, and the
// directories are swapped under the query lock: queries before the swap
// see the old state, after it the new one, never a mix.

// ErrReplayRunning is returned by Replay while one is in progress, and by
// LiftSuppression during a replay (the lift would be lost in the swap).
var ErrReplayRunning = errors.New("a replay is in progress")

// ErrLogTrimmed is returned by Replay when retention removed the log's
// oldest events: the aggregates derived from them cannot be re-derived.
var ErrLogTrimmed = errors.New("the log was trimmed by retention")

// ReplayStatus describes the current or last replay.
type ReplayStatus struct {
	State    string    `json:"state"` // idle, running, done, failed
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Applied  uint64    `json:"applied"` // events re-applied so far
	Target   uint64    `json:"target"`  // log end when last looked
	Error    string    `json:"error,omitempty"`
}

type replayState struct {
	mu     sync.Mutex
	status ReplayStatus
}

func (r *replayState) set(f func(*ReplayStatus)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

// ReplayStatus returns the current or last replay's status.
func (e *Engine) ReplayStatus() ReplayStatus {
	e.replay.mu.Lock()
	defer e.replay.mu.Unlock()
	if e.replay.status.State == "" {
		return ReplayStatus{State: "idle"}
	}
	return e.replay.status
}

// firstSeqer is implemented by logs that can be trimmed.
type firstSeqer interface{ FirstSeq() uint64 }

// swapLag is how close to the log's end the replay gets before the live
// engine pauses for the swap.
const swapLag = 20_000

// StartReplay checks that a replay can run, marks it running and returns
// the function that performs it (to be run in its own goroutine), so that
// a caller learns of a refusal synchronously.
func (e *Engine) StartReplay() (func(ctx context.Context) error, error) {
	if fs, ok := e.src.(firstSeqer); ok && fs.FirstSeq() > 1 {
		return nil, fmt.Errorf("%w: it starts at seq %d, and a replay would lose the aggregates of the events before it", ErrLogTrimmed, fs.FirstSeq())
	}
	if !e.replaying.CompareAndSwap(false, true) {
		return nil, ErrReplayRunning
	}
	e.replay.set(func(s *ReplayStatus) {
		*s = ReplayStatus{State: "running", Started: time.Now().UTC(), Target: e.src.LastSeq()}
	})
	return func(ctx context.Context) error {
		defer e.replaying.Store(false)
		err := e.runReplay(ctx)
		e.replay.set(func(s *ReplayStatus) {
			s.Finished = time.Now().UTC()
			if err != nil {
				s.State, s.Error = "failed", err.Error()
			} else {
				s.State = "done"
			}
		})
		if err != nil {
			e.log.Error("engine: replay failed; the previous state stays", "err", err)
		} else {
			e.log.Info("engine: replay done", "applied", e.applied.Load())
		}
		return err
	}, nil
}

func (e *Engine) runReplay(ctx context.Context) error {
	next := e.cfg.Dir + ".replay"
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("remove stale replay dir: %w", err)
	}
	lifts, err := e.Lifts()
	if err != nil {
		return err
	}
	cfg := e.cfg.ForBulk(next)
	cfg.Logger = e.log.With("component", "replay")
	ne, err := Open(cfg, e.src)
	if err != nil {
		return err
	}
	defer func() {
		if ne != nil {
			ne.Close()
			os.RemoveAll(next)
		}
	}()
	if err := ne.ImportLifts(lifts); err != nil {
		return err
	}
	progress := func(applied uint64) {
		e.replay.set(func(s *ReplayStatus) { s.Applied, s.Target = applied, e.src.LastSeq() })
	}
	// Follow the log outside any lock until close to its end.
	for {
		if err := ne.CatchUp(ctx, progress); err != nil {
			return err
		}
		if last := e.src.LastSeq(); last < ne.Applied()+swapLag {
			break
		}
	}

	// Pause the live engine (it applies under mu), finish, swap.
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if err := ne.CatchUp(ctx, progress); err != nil {
		return err
	}
	if err := ne.Close(); err != nil {
		return err
	}
	ne = nil
	return e.swapState(next)
}

// swapState installs the store in dir as the engine's state, with e.mu
// held: the apply side starts over from the new store's checkpoint.
func (e *Engine) swapState(dir string) error {
	e.dbMu.Lock()
	defer e.dbMu.Unlock()
	if e.rtxn != nil {
		e.rtxn.Discard()
		e.rtxn = nil
	}
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("close state store: %w", err)
	}
	old := e.cfg.Dir + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(e.cfg.Dir, old); err != nil {
		return fmt.Errorf("move old state aside: %w", err)
	}
	if err := os.Rename(dir, e.cfg.Dir); err != nil {
		return fmt.Errorf("install replayed state: %w", err)
	}
	db, err := storage.OpenBadgerOptions(e.cfg.Dir, stateBadgerOptions, e.cfg.Logger)
	if err != nil {
		return fmt.Errorf("open replayed state: %w", err)
	}
	e.db = db
	e.resetApplySide()
	e.epoch++
	if err := e.load(); err != nil {
		return err
	}
	if err := os.RemoveAll(old); err != nil {
		e.log.Warn("engine: remove old state", "err", err)
	}
	ch := make(chan struct{})
	close(*e.appliedCh.Swap(&ch))
	return nil
}

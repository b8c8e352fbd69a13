package export_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/export"
)

// memSource is an in-memory Source. The synctest bubble below cannot host
// Badger's background goroutines, so RunEvery's timing is tested with it;
// everything else uses the real log.
type memSource struct {
	mu  sync.Mutex
	evs []event.Event
	cps map[string]uint64
}

func (m *memSource) add(evs ...event.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range evs {
		e.Seq = uint64(len(m.evs) + 1)
		m.evs = append(m.evs, e)
	}
}

func (m *memSource) ReadFrom(ctx context.Context, from uint64, fn func(*event.Event) error) error {
	m.mu.Lock()
	evs := m.evs
	m.mu.Unlock()
	for i := max(from, 1) - 1; i < uint64(len(evs)); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := evs[i]
		if err := fn(&e); err != nil {
			return err
		}
	}
	return nil
}

func (m *memSource) LastSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return uint64(len(m.evs))
}

func (m *memSource) Checkpoint(name string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cps[name], nil
}

func (m *memSource) SetCheckpoint(name string, seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cps[name] = seq
	return nil
}

func TestRunEvery(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		src := &memSource{cps: map[string]uint64{}}
		src.add(genEvents(10, 500, 2)...)
		x, err := export.New(export.DefaultConfig(dir), src, nil)
		require.NoError(t, err)
		defer x.Close()

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- x.RunEvery(ctx, time.Minute) }()

		synctest.Wait()
		cp, _ := src.Checkpoint(export.CheckpointName)
		require.Zero(t, cp, "nothing before the first tick")

		time.Sleep(time.Minute)
		synctest.Wait()
		cp, _ = src.Checkpoint(export.CheckpointName)
		require.Equal(t, uint64(500), cp)

		src.add(genEvents(11, 100, 2)...)
		time.Sleep(time.Minute)
		synctest.Wait()
		cp, _ = src.Checkpoint(export.CheckpointName)
		require.Equal(t, uint64(600), cp)

		cancel()
		require.NoError(t, <-done)
	})
	// Outside the bubble: the files are complete and exactly once.
	x, err := export.New(export.DefaultConfig(dir), &memSource{cps: map[string]uint64{export.CheckpointName: 600, export.IntentName: 600}}, nil)
	require.NoError(t, err)
	defer x.Close()
	requireExactlyOnce(t, x, dir, 600)
}

func TestRunEvery_Off(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &memSource{cps: map[string]uint64{}}
		src.add(genEvents(12, 10, 1)...)
		x, err := export.New(export.DefaultConfig(t.TempDir()), src, nil)
		require.NoError(t, err)
		defer x.Close()
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		require.NoError(t, x.RunEvery(ctx, 0))
		cp, _ := src.Checkpoint(export.CheckpointName)
		require.Zero(t, cp)
	})
}

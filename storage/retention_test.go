package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage"
)

func received(e event.Event, at time.Duration) event.Event {
	e.ReceivedTime = t0.Add(at)
	return e
}

func TestTrim(t *testing.T) {
	dir := t.TempDir()
	l, err := storage.Open(storage.DefaultConfig(dir))
	require.NoError(t, err)
	ctx := context.Background()
	// Entries: [1,2] received at 0h, [3] at 1h, [4,5] at 2h.
	for _, batch := range [][]event.Event{
		{received(ev(1), 0), received(ev(2), 0)},
		{received(ev(3), time.Hour)},
		{received(ev(4), 2*time.Hour), received(ev(5), 2*time.Hour)},
	} {
		_, err := l.AppendCtx(batch...)
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, l.FirstSeq())

	// Nothing is old enough, or nothing consumed: nothing goes.
	n, err := l.Trim(ctx, 5, t0)
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = l.Trim(ctx, 1, t0.Add(3*time.Hour)) // entry [1,2] is only half consumed
	require.NoError(t, err)
	require.Zero(t, n)

	// Consumed through 4 and older than 90m: only whole entries [1,2], [3].
	n, err = l.Trim(ctx, 4, t0.Add(90*time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	require.EqualValues(t, 4, l.FirstSeq())
	got := readAll(t, l, l.FirstSeq())
	require.Len(t, got, 2)
	require.EqualValues(t, 4, got[0].Seq)

	// The trim mark survives a restart; numbering continues after
	// everything is trimmed.
	require.NoError(t, l.Close())
	l, err = storage.Open(storage.DefaultConfig(dir))
	require.NoError(t, err)
	defer l.Close()
	require.EqualValues(t, 4, l.FirstSeq())
	require.EqualValues(t, 5, l.LastSeq())
	n, err = l.Trim(ctx, 5, t0.Add(3*time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	require.NoError(t, l.Close())
	l, err = storage.Open(storage.DefaultConfig(dir))
	require.NoError(t, err)
	defer l.Close()
	require.EqualValues(t, 6, l.FirstSeq())
	require.EqualValues(t, 5, l.LastSeq())
	res, err := l.AppendCtx(received(ev(6), 4*time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 6, res.FirstSeq)
	require.Len(t, readAll(t, l, l.FirstSeq()), 1)
	// Redelivery of a trimmed event is still a duplicate within the
	// dedupe horizon: trimming the log does not forget it.
	res, err = l.AppendCtx(received(ev(1), 4*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, res.Duplicates)
}

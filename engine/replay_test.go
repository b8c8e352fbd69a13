package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// TestReplayWhileServing: a replay re-derives the state while Run follows
// a growing log and queries go on; afterwards every answer equals the
// naive model's, and the engine keeps following the log.
func TestReplayWhileServing(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	l := storagetest.New(t)
	_, err := l.AppendCtx(randomStream(rng, 3000)...)
	require.NoError(t, err)
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.BatchEvents = 100
	eng, err := engine.Open(cfg, l)
	require.NoError(t, err)
	defer eng.Close()
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- eng.Run(ctx) }()

	require.Equal(t, "idle", eng.ReplayStatus().State)
	replay, err := eng.StartReplay()
	require.NoError(t, err)
	_, err = eng.StartReplay()
	require.ErrorIs(t, err, engine.ErrReplayRunning)
	replayDone := make(chan error, 1)
	go func() { replayDone <- replay(context.Background()) }()

	// Ingest and queries go on during the replay.
	ref := engine.CampaignRef{Source: "sp", Account: "a1", Campaign: "c1"}
	for i := 0; i < 20; i++ {
		_, err := l.AppendCtx(randomStream(rng, 50)...)
		require.NoError(t, err)
		if _, err = eng.Funnel(ref, engine.Range{}); err != nil {
			require.ErrorIs(t, err, engine.ErrNotFound) // not applied yet
		}
	}
	require.NoError(t, <-replayDone)
	st := eng.ReplayStatus()
	require.Equal(t, "done", st.State, "%+v", st)
	require.Positive(t, st.Applied)

	_, err = l.AppendCtx(randomStream(rng, 100)...)
	require.NoError(t, err)
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	require.NoError(t, eng.WaitApplied(wctx, l.LastSeq()))

	events := accepted(t, l)
	for _, acct := range []string{"a1", "a2"} {
		for c := 0; c < 3; c++ {
			ref := engine.CampaignRef{Source: "sp", Account: acct, Campaign: fmt.Sprintf("c%d", c)}
			f, err := eng.Funnel(ref, engine.Range{})
			require.NoError(t, err)
			require.Equal(t, naiveFunnel(events, ref, engine.Range{}), flatten(f), "%+v", ref)
			pts, err := eng.Timeseries(ref, 5*time.Minute, engine.Range{})
			require.NoError(t, err)
			require.Equal(t, naiveSeries(events, cfg.AllowedLateness, ref, 5*time.Minute, engine.Range{}, false), pts, "%+v", ref)
		}
	}
	cancel()
	require.NoError(t, <-runDone)
}

// A replay of an empty log swaps in a fresh store; the engine then applies
// new events (it once lacked the fresh store's key filter there, and
// panicked).
func TestReplayOfEmptyLog(t *testing.T) {
	l := storagetest.New(t)
	eng, err := engine.Open(engine.DefaultConfig(t.TempDir()), l)
	require.NoError(t, err)
	defer eng.Close()
	replay, err := eng.StartReplay()
	require.NoError(t, err)
	require.NoError(t, replay(context.Background()))
	stream := randomStream(rand.New(rand.NewPCG(1, 1)), 50)
	_, err = l.AppendCtx(stream...)
	require.NoError(t, err)
	require.NoError(t, eng.CatchUp(context.Background(), nil))
	events := accepted(t, l)
	ref := engine.CampaignRef{Source: "sp", Account: "a1", Campaign: "c1"}
	f, err := eng.Funnel(ref, engine.Range{})
	require.NoError(t, err)
	require.Equal(t, naiveFunnel(events, ref, engine.Range{}), flatten(f))
}

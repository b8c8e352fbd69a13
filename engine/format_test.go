package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailfunnel/mailfunnel/engine"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// A store of format version 1 (bounce groups and suppression states in
// keys of their own) is migrated when opened: every answer stays the same,
// and events applied after the migration give what a rebuild of the whole
// log gives. crashed is a migration killed midway, which left both the
// folded records and their sources.
func TestMigrateFormatV1(t *testing.T) {
	for _, crashed := range []bool{false, true} {
		t.Run(fmt.Sprint("crashed=", crashed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 11))
			l := storagetest.New(t)
			dir := t.TempDir()
			cfg := engine.DefaultConfig(dir)
			cfg.SuppressSoftCount = 2
			stream := randomStream(rng, 1200)
			_, err := l.AppendCtx(stream[:800]...)
			require.NoError(t, err)

			eng, err := engine.Open(cfg, l)
			require.NoError(t, err)
			require.True(t, engine.Fresh(eng), "an empty store is fresh, format key or not")
			require.NoError(t, eng.CatchUp(context.Background(), nil))
			sups := pageAll(t, eng, "", 1000)
			require.NotEmpty(t, sups)
			_, _, err = eng.LiftSuppression(sups[0].Recipient)
			require.NoError(t, err)
			before, beforeSups := allAnswers(t, eng), pageAll(t, eng, "", 1000)
			require.NoError(t, eng.Close())

			groups, supStates, err := engine.DowngradeToV1(dir, crashed)
			require.NoError(t, err)
			require.Positive(t, groups, "the stream has bounces")
			require.Positive(t, supStates, "the stream has suppressions")

			eng, err = engine.Open(cfg, l)
			require.NoError(t, err)
			require.False(t, engine.Fresh(eng))
			require.JSONEq(t, string(before), string(allAnswers(t, eng)))
			require.Equal(t, beforeSups, pageAll(t, eng, "", 1000))

			// Later events land on the migrated records: late bounces
			// move first reaches, soft bounces complete windows.
			_, err = l.AppendCtx(stream[800:]...)
			require.NoError(t, err)
			require.NoError(t, eng.CatchUp(context.Background(), nil))
			got, gotSups := allAnswers(t, eng), pageAll(t, eng, "", 1000)
			lifts, err := eng.Lifts()
			require.NoError(t, err)
			require.NoError(t, eng.Close())

			rcfg := cfg
			rcfg.Dir = t.TempDir()
			rb, err := engine.Open(rcfg, l)
			require.NoError(t, err)
			defer rb.Close()
			require.NoError(t, rb.ImportLifts(lifts))
			require.NoError(t, rb.CatchUp(context.Background(), nil))
			require.JSONEq(t, string(allAnswers(t, rb)), string(got))
			require.Equal(t, pageAll(t, rb, "", 1000), gotSups)
		})
	}
}

// A store written by a newer format is refused, not misread.
func TestNewerFormatRefused(t *testing.T) {
	l := storagetest.New(t)
	dir := t.TempDir()
	eng, err := engine.Open(engine.DefaultConfig(dir), l)
	require.NoError(t, err)
	require.NoError(t, eng.Close())
	require.NoError(t, engine.SetFormatVersion(dir, 99))
	_, err = engine.Open(engine.DefaultConfig(dir), l)
	require.ErrorContains(t, err, "format version 99")
}

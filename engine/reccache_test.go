package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/zeebo/xxh3"

	"github.com/mailfunnel/mailfunnel/event"
	"github.com/mailfunnel/mailfunnel/storage/storagetest"
)

// The second tier against a model of what it stands for: a record put
// clean is already in the store; one put dirty reaches the store (spill)
// before it can leave the tier. So whenever take misses, the store must
// hold the last value put for the key, and a hit must return exactly it.
// Small budgets make segments drop all the time, with records taken out
// of them (garbage) and records put again (newer copies) mixed in.
func TestColdRecsAgainstModel(t *testing.T) {
	for _, records := range []int{1, 3, 10, 100} {
		t.Run(fmt.Sprint("records=", records), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(records), 9))
			c := newColdRecs(records)
			store := map[string]string{} // what the state store holds
			last := map[string]string{}  // the newest value of each key
			in := map[string]bool{}      // put and not taken since
			spills := 0
			spill := func(k, v []byte, flags byte) error {
				require.NotZero(t, flags&coldDirty, "a clean record was spilled")
				require.True(t, in[string(k)], "spilled %q, which is not in the tier", k)
				require.Equal(t, last[string(k)], string(v), "spilled an old copy of %q", k)
				store[string(k)] = string(v)
				spills++
				return nil
			}
			for i := 0; i < 20_000; i++ {
				k := fmt.Sprintf("r\x00\x00\x00%c%d@example.com", rune('a'+rng.IntN(3)), rng.IntN(60))
				if rng.IntN(2) == 0 {
					v, flags, ok := c.take([]byte(k))
					if !ok {
						require.False(t, in[k] && store[k] != last[k], "%q left the tier before the store had it", k)
						if in[k] {
							in[k] = false
						}
						continue
					}
					require.True(t, in[k], "took %q, which was not put", k)
					require.Equal(t, last[k], string(v))
					in[k] = false
					if flags&coldDirty == 0 {
						require.Equal(t, last[k], store[k], "a clean record differs from the store")
					}
					continue
				}
				if in[k] {
					continue // the engine puts only what it took out or read
				}
				v := fmt.Sprintf("v%d-%s", i, k[:rng.IntN(len(k))])
				var flags byte
				if rng.IntN(3) == 0 {
					store[k] = v // clean: the store holds it already
				} else {
					flags = coldDirty
				}
				last[k], in[k] = v, true
				require.NoError(t, c.put(k, []byte(v), flags, spill))
				require.LessOrEqual(t, c.bytes, max(c.bound(), c.segSize+len(k)+len(v)+3),
					"the tier holds more than its bound and the newest segment")
			}
			live := 0
			for i, seg := range c.segs {
				for off := 0; off < len(seg); {
					loc := uint64(c.first+uint32(i))<<32 | uint64(off)
					k, _, _, n := c.entry(loc)
					if c.live(xxh3.Hash(k), loc) {
						live += n
					}
					off += n
				}
			}
			require.Equal(t, live, c.liveBytes, "live bytes drifted from the records indexed")
			require.NoError(t, c.flushDirty(spill))
			for k, ok := range in {
				if ok {
					require.Equal(t, last[k], store[k], "%q after the final flush", k)
				}
			}
			n := spills
			require.NoError(t, c.flushDirty(spill))
			require.Equal(t, n, spills, "a second flush found dirty records")
			if records >= 10 {
				require.Positive(t, c.len(), "the tier kept nothing")
			}
		})
	}
}

// The first record of the first segment sits at location 0, the index's
// zero value: once taken, a drop of its segment must not spill it.
func TestColdRecsLocationZero(t *testing.T) {
	c := newColdRecs(1)
	var spilled []string
	spill := func(k, v []byte, flags byte) error { spilled = append(spilled, string(k)); return nil }
	require.NoError(t, c.put("first", []byte("old"), coldDirty, spill))
	_, _, ok := c.take([]byte("first"))
	require.True(t, ok)
	for i := 0; c.first == 0; i++ {
		require.NoError(t, c.put(fmt.Sprint("k", i), make([]byte, 40), 0, spill))
	}
	require.Empty(t, spilled)
}

// In the normal mode nothing dirty may reach the second tier; if it does,
// the drop fails rather than lose the record.
func TestColdRecsRefusesToDropDirtyWithoutWriter(t *testing.T) {
	c := newColdRecs(1)
	require.NoError(t, c.put("dirty", []byte("v"), coldDirty, nil))
	var err error
	for i := 0; err == nil && i < 100; i++ {
		err = c.put(fmt.Sprint("k", i), make([]byte, 40), 0, nil)
	}
	require.ErrorIs(t, err, errDirtySpill)
	_, _, ok := c.take([]byte("dirty"))
	require.True(t, ok, "the record that could not be written left the cache")
}

// A record's flags come back with it, and a flush clears them.
func TestColdRecsFlags(t *testing.T) {
	c := newColdRecs(100)
	require.NoError(t, c.put("a", []byte("1"), coldDirty|coldPub, nil))
	var got byte
	require.NoError(t, c.flushDirty(func(k, v []byte, flags byte) error { got = flags; return nil }))
	require.Equal(t, byte(coldDirty|coldPub), got)
	v, flags, ok := c.take([]byte("a"))
	require.True(t, ok)
	require.Equal(t, "1", string(v))
	require.Zero(t, flags)
}

// Records that cycle between the tiers leave garbage behind at every
// round; reclaiming must keep the live ones while they fit in the budget,
// not drop them with the garbage.
func TestColdRecsKeepsWhatFits(t *testing.T) {
	const n = 1000
	c := newColdRecs(n)
	v := make([]byte, 40) // with key and header well under coldRecordBytes
	key := func(i int) string { return fmt.Sprintf("r\x00\x00\x00\x01user%d@example.com", i) }
	for i := 0; i < n; i++ {
		require.NoError(t, c.put(key(i), v, 0, nil))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20*n; round++ {
		k := key(rng.IntN(n))
		_, _, ok := c.take([]byte(k))
		require.True(t, ok, "round %d: %s was dropped though the budget holds every record", round, k)
		require.NoError(t, c.put(k, v, 0, nil))
	}
	require.Equal(t, n, c.len())
	require.LessOrEqual(t, c.bytes, c.bound())
}

// The engine reports what its recipient cache holds after a commit, within
// the bound a small --recipient-cache sets, and more with a larger one.
func TestCacheStats(t *testing.T) {
	l := storagetest.New(t)
	events := make([]event.Event, 0, 600)
	for i := range 600 {
		events = append(events, event.Event{Source: "eb", Provider: "emblue", ProviderEvent: "sent", Type: event.Sent,
			Account: "1", Campaign: fmt.Sprint(i % 3), Recipient: fmt.Sprintf("u%d@example.com", i), RecipientDomain: "example.com",
			MessageID: fmt.Sprint(i), EventTime: time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC)})
	}
	_, err := l.AppendCtx(events...)
	require.NoError(t, err)
	stats := func(cache int) Stats {
		cfg := DefaultConfig(t.TempDir())
		cfg.RecipientCache = cache
		e, err := Open(cfg, l)
		require.NoError(t, err)
		defer e.Close()
		require.NoError(t, e.CatchUp(context.Background(), nil))
		return e.Stats()
	}
	small, large := stats(10), stats(100_000)
	require.Positive(t, small.CachedRecords)
	c := newColdRecs(10)
	require.LessOrEqual(t, small.CachedRecordBytes, c.bound()+c.segSize, "segments past the bound")
	require.Less(t, small.CachedRecords, 100)
	require.Equal(t, 1200, large.CachedRecords, "every record of 600 recipients (campaign and all-campaigns)")
}

package advisory_test

import (
	"context"
	"testing"

	"github.com/runledger/runledger/internal/advisory"
	"github.com/runledger/runledger/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Advisory locks share one key space per database: two services given the
// same key would silently skip each other's work.
func TestNoTwoKeysCollide(t *testing.T) {
	seen := map[advisory.Key]string{}
	for name, k := range advisory.Keys {
		if other, ok := seen[k]; ok {
			t.Fatalf("keys %q and %q are both %#x", name, other, int64(k))
		}
		seen[k] = name
	}
	for _, k := range []advisory.Key{advisory.Migrate, advisory.Rebuild, advisory.Reaper, advisory.Compaction} {
		if _, ok := seen[k]; !ok {
			t.Fatalf("key %#x is missing from advisory.Keys", int64(k))
		}
	}
}

// While one session holds a key, TryLock on another gives nil and Holder
// names the holder; after Unlock the key is free and the connection pooled.
func TestTryLockSkipsWhileHeldAndUnlockFreesIt(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	a, b := pgtest.Pool(t, url), pgtest.Pool(t, url)
	held, err := advisory.TryLock(ctx, a, advisory.Reaper)
	if err != nil || held == nil {
		t.Fatalf("first TryLock = %v, %v", held, err)
	}
	if other, err := advisory.TryLock(ctx, b, advisory.Reaper); err != nil || other != nil {
		t.Fatalf("TryLock while held = %v, %v; want nil", other, err)
	}
	if pid, err := advisory.Holder(ctx, b, advisory.Reaper); err != nil || pid == 0 {
		t.Fatalf("Holder while held = %d, %v", pid, err)
	}
	if other, err := advisory.TryLock(ctx, b, advisory.Rebuild); err != nil || other == nil {
		t.Fatalf("another key while the first is held = %v, %v", other, err)
	} else if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if pid, err := advisory.Holder(ctx, b, advisory.Reaper); err != nil || pid != 0 {
		t.Fatalf("Holder after Unlock = %d, %v; want none", pid, err)
	}
	again, err := advisory.TryLock(ctx, b, advisory.Reaper)
	if err != nil || again == nil {
		t.Fatalf("TryLock after Unlock = %v, %v", again, err)
	}
	if err := again.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if n := a.Stat().TotalConns() - a.Stat().IdleConns(); n != 0 {
		t.Fatalf("%d connections still out of the pool after Unlock", n)
	}
}

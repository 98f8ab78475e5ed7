package migrations_test

import (
	"context"
	"sync"
	"testing"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestApplyIsIdempotentAndSafeConcurrently(t *testing.T) {
	pool := pgtest.NewDB(t) // already migrated from the template
	all, err := migrations.All()
	if err != nil || len(all) < 2 || all[0].Version != 1 {
		t.Fatalf("All() = %d migrations, %v", len(all), err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied, err := migrations.Apply(context.Background(), pool)
			if err != nil || len(applied) != 0 {
				t.Errorf("re-apply = %v, %v; want nothing applied", applied, err)
			}
		}()
	}
	wg.Wait()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, len(all))
	}
}

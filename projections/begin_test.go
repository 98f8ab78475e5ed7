package projections

import (
	"context"
	stdsql "database/sql"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/pgtest"
)

// A read-model batch and a Consumer's transaction begin with their limits
// set in the same round trip: inside, the settings are the group's (and
// the isolation watermill asks for).
func TestSubscriberTransactionsBeginWithTheirLimits(t *testing.T) {
	pool := pgtest.NewDB(t)
	ctx := context.Background()
	proj, err := byName(Runs)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{LockTimeout: 123e6, StatementTimeout: 4567e6, IdleInTransactionTimeout: 890e6, Logger: quietTestLogger()}
	opts.setDefaults()
	g := newGroup(proj, beginnerFromPgx(pool), opts)
	consumer := limitedBeginner{Beginner: beginnerFromPgx(pool), customPlans: true}
	rr := &stdsql.TxOptions{Isolation: stdsql.LevelRepeatableRead}
	for _, c := range []struct {
		name  string
		begin func() (*pgxTx, error)
		want  map[string]string
	}{
		{"read-model batch", func() (*pgxTx, error) {
			tx, err := g.BeginTx(ctx, rr)
			if err != nil {
				return nil, err
			}
			return tx.(*batch).inner, nil
		}, map[string]string{"lock_timeout": "123ms", "statement_timeout": "4567ms", "idle_in_transaction_session_timeout": "890ms",
			"synchronous_commit": "off", "transaction_isolation": "repeatable read", "plan_cache_mode": "auto"}},
		{"consumer", func() (*pgxTx, error) {
			tx, err := consumer.BeginTx(ctx, rr)
			if err != nil {
				return nil, err
			}
			return tx.(*pgxTx), nil
		}, map[string]string{"lock_timeout": "500ms", "statement_timeout": "3s", "idle_in_transaction_session_timeout": "2s",
			"synchronous_commit": "off", "transaction_isolation": "repeatable read", "plan_cache_mode": "force_custom_plan"}},
	} {
		tx, err := c.begin()
		if err != nil {
			t.Fatalf("%s: begin: %v", c.name, err)
		}
		for name, want := range c.want {
			var got string
			if err := tx.tx.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s: %s = %q inside, want %q", c.name, name, got, want)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("%s: commit: %v", c.name, err)
		}
	}

	// Settings PostgreSQL refuses fail the begin, and leave no connection
	// behind in a failed transaction: the next batch begins as usual.
	bad := sessionLimits{lockTimeout: 1000 * time.Hour, statementTimeout: time.Second, idleTimeout: time.Second}
	if _, err := bad.begin(ctx, beginnerFromPgx(pool), rr); err == nil {
		t.Fatal("a lock timeout PostgreSQL refuses began a transaction")
	}
	for range 3 {
		tx, err := g.BeginTx(ctx, rr)
		if err != nil {
			t.Fatalf("a batch after a refused begin: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

package dbclock_test

import (
	"context"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/dbclock"
	"github.com/runledger/runledger/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Two processes whose own clocks differ by two minutes read the same time.
func TestSkewedClocksAgreeOnTheDatabasesTime(t *testing.T) {
	pool := pgtest.NewDB(t)
	ctx := context.Background()
	fast := dbclock.New(pool, dbclock.Options{Local: func() time.Time { return time.Now().Add(2 * time.Minute) }})
	slow := dbclock.New(pool, dbclock.Options{Local: func() time.Time { return time.Now().Add(-time.Minute) }})
	for _, c := range []*dbclock.Clock{fast, slow} {
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := fast.Now().Sub(slow.Now()); d > 50*time.Millisecond || d < -50*time.Millisecond {
		t.Fatalf("skewed clocks differ by %s after sync", d)
	}
	var db time.Time
	if err := pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if d := fast.Now().Sub(db); d > 50*time.Millisecond || d < -50*time.Millisecond {
		t.Fatalf("clock differs from the database's by %s", d)
	}
	if off := fast.Offset(); off > -2*time.Minute+50*time.Millisecond || off < -2*time.Minute-50*time.Millisecond {
		t.Fatalf("offset of the fast clock = %s, want about -2m", off)
	}
}

// A small backward correction never makes Now go back; a large one (here
// the first measurement of a clock an hour ahead) is taken at once.
func TestNowHoldsSmallCorrectionsAndTakesLargeOnes(t *testing.T) {
	pool := pgtest.NewDB(t)
	for _, c := range []struct {
		skew time.Duration
		hold bool
	}{{300 * time.Millisecond, true}, {time.Hour, false}} {
		clock := dbclock.New(pool, dbclock.Options{Local: func() time.Time { return time.Now().Add(c.skew) }})
		before := clock.Now() // offset 0: ahead of the database by skew
		if err := clock.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		after := clock.Now()
		if c.hold && after.Before(before) {
			t.Fatalf("skew %s: Now went back from %s to %s", c.skew, before, after)
		}
		if !c.hold && before.Sub(after) < c.skew-time.Second {
			t.Fatalf("skew %s: the correction was not taken (%s then %s)", c.skew, before, after)
		}
	}
}

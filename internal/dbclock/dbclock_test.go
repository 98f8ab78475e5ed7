package dbclock_test

import (
	"context"
	"sync"
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

// A step of the host's wall clock after a measurement (an operator or NTP
// setting it by an hour) does not move Now: the clock is anchored on the
// database's time at the measurement plus the monotonic time elapsed since.
// The step is injected into the wall clock only (Local), never into the
// monotonic reading, which is what the host really does.
func TestWallClockStepDoesNotMoveNow(t *testing.T) {
	pool := pgtest.NewDB(t)
	var mu sync.Mutex
	step := time.Duration(0)
	wall := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Round(0).Add(step) // Round(0): a wall reading, as a stepped host gives
	}
	for _, jump := range []time.Duration{time.Hour, -time.Hour} {
		mu.Lock()
		step = 0
		mu.Unlock()
		clock := dbclock.New(pool, dbclock.Options{Local: wall})
		if err := clock.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		before := clock.Now()
		mu.Lock()
		step = jump
		mu.Unlock()
		after := clock.Now()
		if d := after.Sub(before); d < 0 || d > 5*time.Second {
			t.Fatalf("wall clock stepped by %s: Now moved by %s (from %s to %s); want it to follow elapsed time only",
				jump, d, before, after)
		}
		var db time.Time
		if err := pool.QueryRow(context.Background(), `SELECT clock_timestamp()`).Scan(&db); err != nil {
			t.Fatal(err)
		}
		if d := clock.Now().Sub(db); d > time.Second || d < -time.Second {
			t.Fatalf("wall clock stepped by %s: Now differs from the database's clock by %s", jump, d)
		}
	}
}

package client

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPace(t *testing.T) {
	policy := func(ttl, min time.Duration) Policy {
		return Policy{StaleAfter: Duration(ttl), HeartbeatMinInterval: Duration(min)}
	}
	cases := []struct {
		name                     string
		policy                   Policy
		ttl, override            time.Duration
		wantInterval, wantMargin time.Duration
	}{
		{"defaults", policy(15*time.Minute, 5*time.Second), 15 * time.Minute, 0, 5 * time.Second, 90 * time.Second},
		{"tests", policy(3*time.Second, 100*time.Millisecond), 3 * time.Second, 0, 100 * time.Millisecond, 300 * time.Millisecond},
		{"no coalescing", policy(time.Minute, 0), time.Minute, 0, 2 * time.Second, 6 * time.Second},
		{"override capped at ttl/10", policy(time.Minute, time.Second), time.Minute, time.Hour, 6 * time.Second, 12 * time.Second},
		{"run's own short ttl", policy(15*time.Minute, 5*time.Second), 30 * time.Second, 0, 3 * time.Second, 6 * time.Second},
		{"floor", policy(100*time.Millisecond, 0), 100 * time.Millisecond, 0, 10 * time.Millisecond, 20 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			interval, margin := pace(c.policy, c.ttl, c.override)
			if interval != c.wantInterval || margin != c.wantMargin {
				t.Fatalf("pace = %s, %s; want %s, %s", interval, margin, c.wantInterval, c.wantMargin)
			}
		})
	}
}

func TestProgressIgnoresInvalidCounts(t *testing.T) {
	p := newProgress("r", 10)
	p.Set(3, 1)
	p.Set(2, 1)  // backwards
	p.Set(8, 3)  // past the total
	p.Set(-1, 0) // negative
	if c, f := p.Counts(); c != 3 || f != 1 {
		t.Fatalf("counts = %d, %d; want 3, 1", c, f)
	}
	if _, _, refused := p.snapshot(); !refused {
		t.Fatal("an ignored Set was not reported")
	}
	if _, _, refused := p.snapshot(); refused {
		t.Fatal("the report was not cleared")
	}
	p.Add(6, 0)
	if c, f := p.Counts(); c != 9 || f != 1 {
		t.Fatalf("counts after Add = %d, %d", c, f)
	}
}

func TestProgressPause(t *testing.T) {
	p := newProgress("r", 10)
	if err := p.WaitIfPaused(context.Background()); err != nil || p.Paused() {
		t.Fatal("a fresh run is paused")
	}
	p.setPaused(true)
	ctx, cancel := context.WithCancelCause(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- p.WaitIfPaused(ctx) }()
	select {
	case <-waited:
		t.Fatal("WaitIfPaused returned while paused")
	case <-time.After(20 * time.Millisecond):
	}
	p.setPaused(false)
	if err := <-waited; err != nil {
		t.Fatalf("WaitIfPaused after resume = %v", err)
	}
	p.setPaused(true)
	go func() { waited <- p.WaitIfPaused(ctx) }()
	cancel(ErrCancelRequested)
	if err := <-waited; !errors.Is(err, ErrCancelRequested) {
		t.Fatalf("WaitIfPaused after cancel = %v", err)
	}
}

// Package fakeclock is the server clock under a test's control: tests move
// it forward; nothing sleeps to reach a deadline. Its timers fire when
// Advance reaches their instant.
package fakeclock

import (
	"sync"
	"time"

	"github.com/runledger/runledger/internal/clock"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*Timer]struct{}
}

// New returns a clock reading t.
func New(t time.Time) *Clock { return &Clock{now: t, timers: map[*Timer]struct{}{}} }

// Now returns the clock's time; pass the method value as a Now func.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and fires the timers it reaches.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			c.fireLocked(t)
		}
	}
}

// NewTimer returns a timer that fires once the clock reaches now+d.
func (c *Clock) NewTimer(d time.Duration) clock.Timer {
	t := &Timer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

func (c *Clock) fireLocked(t *Timer) {
	delete(c.timers, t)
	select {
	case t.ch <- c.now:
	default:
	}
}

// Timer is a timer of a fake Clock.
type Timer struct {
	c  *Clock
	ch chan time.Time
	at time.Time
}

// C is where the timer fires.
func (t *Timer) C() <-chan time.Time { return t.ch }

// Reset re-arms the timer to fire once the clock reaches now+d.
func (t *Timer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, active := t.c.timers[t]
	t.at = t.c.now.Add(d)
	if d <= 0 {
		t.c.fireLocked(t)
		return active
	}
	t.c.timers[t] = struct{}{}
	return active
}

// Stop disarms the timer.
func (t *Timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, active := t.c.timers[t]
	delete(t.c.timers, t)
	return active
}

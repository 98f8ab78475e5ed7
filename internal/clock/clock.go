// Package clock is the shape of a clock with timers, so code that waits for
// an instant (a run's stale_at) can be driven by a fake clock in tests.
package clock

import "time"

// Timer fires once on C after its duration; Reset re-arms it.
type Timer interface {
	C() <-chan time.Time
	// Reset re-arms the timer to fire after d; it reports whether it was active.
	Reset(d time.Duration) bool
	// Stop disarms the timer; it reports whether it was active.
	Stop() bool
}

// NewTimer returns a Timer of the process's clock.
func NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }
func (r realTimer) Stop() bool                 { return r.t.Stop() }

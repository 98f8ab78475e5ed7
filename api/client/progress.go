package client

import (
	"context"
	"sync"
)

// Progress is what a work function reports through and learns from: its
// cumulative counts, which Run's heartbeats carry to the server, and whether
// a user paused the run. Its methods are cheap and safe to call from any
// goroutine as often as work likes: nothing is sent by them; the heartbeat
// goroutine sends the latest counts at its own pace.
type Progress struct {
	runID string
	total int

	mu        sync.Mutex
	completed int
	failed    int
	refused   bool // an invalid Set was ignored (logged once by the heartbeat loop)
	paused    bool
	resumed   chan struct{} // closed while not paused
}

func newProgress(runID string, total int) *Progress {
	resumed := make(chan struct{})
	close(resumed)
	return &Progress{runID: runID, total: total, resumed: resumed}
}

// RunID is the run's id.
func (p *Progress) RunID() string { return p.runID }

// Total is the run's total_calls.
func (p *Progress) Total() int { return p.total }

// Set records the cumulative counts of calls done and failed so far. Counts
// that go backwards, are negative or add up past the total are ignored (the
// server would refuse them), keeping the last valid ones.
func (p *Progress) Set(completed, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setLocked(completed, failed)
}

// Add adds to the counts (see Set).
func (p *Progress) Add(completed, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setLocked(p.completed+completed, p.failed+failed)
}

func (p *Progress) setLocked(completed, failed int) {
	if completed < p.completed || failed < p.failed || completed+failed > p.total {
		p.refused = true
		return
	}
	p.completed, p.failed = completed, failed
}

// Counts returns the counts recorded so far.
func (p *Progress) Counts() (completed, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.completed, p.failed
}

// Paused reports whether the run is paused: a dialer places no new call
// while it is (Run keeps heartbeating).
func (p *Progress) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// WaitIfPaused is the check a dialer makes before each call: it returns
// context.Cause(ctx) if ctx has ended (cancel requested, run fenced, caller
// gone), nil at once if the run is not paused, and otherwise waits until the
// run is resumed (nil) or ctx ends (its cause: a cancel of a paused run ends
// the wait).
func (p *Progress) WaitIfPaused(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	p.mu.Lock()
	resumed := p.resumed
	p.mu.Unlock()
	select {
	case <-resumed:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// setPaused is called by the heartbeat loop with each answer.
func (p *Progress) setPaused(paused bool) (changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if paused == p.paused {
		return false
	}
	p.paused = paused
	if paused {
		p.resumed = make(chan struct{})
	} else {
		close(p.resumed)
	}
	return true
}

// snapshot returns the counts to send and whether an invalid Set was
// ignored since the last snapshot.
func (p *Progress) snapshot() (completed, failed int, refused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	refused, p.refused = p.refused, false
	return p.completed, p.failed, refused
}

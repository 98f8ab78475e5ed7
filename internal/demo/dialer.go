package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runledger/runledger/api/client"
)

// Fate is what the demo makes happen to one run.
type Fate string

// The fates of runs.
const (
	FateNormal Fate = "normal" // dials the list; some calls fail
	FateFail   Fate = "fail"   // the carrier rejects the batch midway: the worker fails the run
	FateCrash  Fate = "crash"  // the process "dies" midway: heartbeats stop, nothing completes; the reaper ends it
	FateCancel Fate = "cancel" // a user presses Cancel midway: the worker stops, the run ends cancelled
	FatePause  Fate = "pause"  // a user pauses, then resumes
	FateDead   Fate = "dead"   // the worker dies at once; a user cancels the silent run (forced)
	FateStall  Fate = "stall"  // the worker heartbeats without progress until the run is flagged stalled
)

// fateDeck is dealt in turn to each worker of the random dialing, from a
// different place each: 40% normal, 20% cancel, 20% pause, 10% fail, 10%
// crash. A crash is played only while fewer than half the businesses are
// blocked by one, and only if its TTL passes before the demo's end (else the
// run is normal).
var fateDeck = []Fate{FateNormal, FateCancel, FatePause, FateFail, FateCrash, FateNormal, FateCancel, FatePause, FateNormal, FateNormal}

// Outcome is how a run ended, as the demo saw it.
type Outcome string

// Outcomes of runs.
const (
	OutCompleted Outcome = "completed"
	OutFailed    Outcome = "failed"     // the worker reported the carrier's failure
	OutCancelled Outcome = "cancelled"  // a user's graceful cancel; the worker stopped
	OutStale     Outcome = "stale"      // the worker crashed; the reaper ended the run
	OutForced    Outcome = "forced"     // a user cancelled a dead worker's silent run
	OutCrashed   Outcome = "crashed"    // the worker crashed; left to the reaper (not yet seen ended)
	OutEnded     Outcome = "demo-ended" // cancelled by the demo's end
	OutFenced    Outcome = "fenced"     // the SDK stopped the work (run ended elsewhere, or contact lost)
	OutError     Outcome = "error"      // anything unexpected
)

// errCarrier is the failure of a run whose fate is fail; the worker reports
// it, and the page shows it as the run's last error.
var errCarrier = errors.New("the carrier rejected the batch (simulated)")

// errCrashed is what a crashed worker's transport answers from then on.
var errCrashed = errors.New("simulated crash: the worker process is gone")

// errAborted is a run's error when its worker did not stop after the demo's
// end asked it to.
var errAborted = errors.New("the demo ended before this worker could stop")

// crashTransport stops talking to the server once crashed, as a dead
// process would: nothing it would send reaches the server.
type crashTransport struct {
	base    http.RoundTripper
	crashed atomic.Bool
}

func (t *crashTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.crashed.Load() {
		return nil, errCrashed
	}
	return t.base.RoundTrip(r)
}

// worker is one simulated dialer of the random dialing: once the opening act
// has left its business, it runs one run after another there until ctx ends.
func (d *demo) worker(ctx context.Context, i int) {
	business := d.businesses[i%len(d.businesses)]
	select {
	case <-d.biz[business].actDone:
	case <-ctx.Done():
		return
	}
	rng := rand.New(rand.NewPCG(d.cfg.Seed, uint64(i)))
	for k := 0; ctx.Err() == nil; k++ {
		f := fateDeck[(i+k*len(d.businesses))%len(fateDeck)]
		if f == FateCrash && !d.mayCrash(business) {
			f = FateNormal
		}
		if !d.runOnce(ctx, rng, i, business, f) {
			// Another run of the business is active: wait, as a real dialer
			// whose start was refused would, and try again with the same fate.
			k--
			sleep(ctx, time.Duration(500+rng.IntN(1500))*time.Millisecond)
		}
	}
}

// newWorker is a worker's SDK client behind a transport the demo can crash.
// A worker that will crash retries briefly: its complete, sent through the
// dead transport, is given up within a fraction of a second, so the demo
// goes on to what follows the crash (the reaper, or the user's cancel) well
// before the run's TTL.
func (d *demo) newWorker(business string, i int, f Fate) (*client.Client, *crashTransport, error) {
	transport := &crashTransport{base: d.transport}
	opts := client.Options{BaseURL: d.cfg.URL, Token: d.workerTokens[business], WorkerID: fmt.Sprintf("dialer-%d", i+1),
		HTTPClient: &http.Client{Transport: transport}, Logger: d.logger}
	if f == FateCrash || f == FateDead {
		opts.MinBackoff, opts.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	c, err := client.New(opts)
	return c, transport, err
}

// spec is a run's start: the demo's TTL and stall threshold where they
// differ from the server's.
func (d *demo) spec(total int) client.RunSpec {
	s := client.RunSpec{RunID: d.newRunID().String(), TotalCalls: total}
	if d.ttl != time.Duration(d.policy.StaleAfter) {
		s.StaleAfter = d.ttl
	}
	if d.stall != time.Duration(d.policy.StallAfter) {
		s.StallAfter = d.stall
	}
	return s
}

// runOnce runs one run with fate f; false if it could not start because
// another run of the business is active.
func (d *demo) runOnce(ctx context.Context, rng *rand.Rand, i int, business string, f Fate) bool {
	if d.isEnding() {
		return true
	}
	c, transport, err := d.newWorker(business, i, f)
	if err != nil {
		d.fail(business, "", f, err)
		return true
	}
	defer c.CloseIdleConnections()
	spec := d.spec(d.cfg.CallsMin + rng.IntN(d.cfg.CallsMax-d.cfg.CallsMin+1))
	stopAt := 1 + rng.IntN(max(1, spec.TotalCalls*2/3)) // where a fail or crash strikes
	var callMu sync.Mutex                               // rng is not safe for concurrent use; work and the user share it
	callTime := func() (time.Duration, bool) {
		callMu.Lock()
		defer callMu.Unlock()
		return d.cfg.CallMin + time.Duration(rng.Int64N(int64(d.cfg.CallMax-d.cfg.CallMin)+1)), rng.Float64() > 0.12 // no answer, busy, wrong number
	}
	// The user acts at a random point of the run's expected length.
	userDelay := time.Duration(float64(spec.TotalCalls) * float64(d.cfg.CallMin+d.cfg.CallMax) / 2 * (0.2 + 0.4*rng.Float64()))

	hold := d.cfg.PauseHold + time.Duration(rng.Int64N(int64(d.cfg.PauseHold)*3/2+1)) // how long a pause lasts

	userCtx, stopUser := context.WithCancel(ctx)
	var userDone sync.WaitGroup
	started := make(chan struct{})
	var startOnce sync.Once
	work := func(ctx context.Context, p *client.Progress) error {
		startOnce.Do(func() { d.began(business, spec.RunID, f, ""); close(started) })
		for n := 0; n < spec.TotalCalls; n++ {
			if err := p.WaitIfPaused(ctx); err != nil {
				return stopped(ctx)
			}
			if ctx.Err() != nil {
				return stopped(ctx)
			}
			if n == stopAt {
				switch f {
				case FateFail:
					return errCarrier
				case FateCrash:
					transport.crashed.Store(true)
					d.setBlocked(business, true)
					d.setBusiness(business, spec.RunID, f, "worker crashed: waiting for the reaper")
					return errCrashed
				}
			}
			dur, ok := callTime()
			d.calls.Add(1)
			if !sleep(ctx, dur) {
				return stopped(ctx)
			}
			if ok {
				p.Add(1, 0)
			} else {
				p.Add(0, 1)
			}
		}
		return nil
	}
	if f == FateCancel || f == FatePause {
		userDone.Add(1)
		go func() {
			defer userDone.Done()
			select {
			case <-started:
			case <-userCtx.Done():
				return
			}
			if sleep(userCtx, userDelay) {
				d.user(userCtx, business, spec.RunID, f, hold)
			}
		}()
	}
	run, err := c.Run(d.runsCtx, business, spec, work)
	d.joinSession(business, c)
	stopUser()
	userDone.Wait()

	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.Code == client.CodeActiveRunExists {
		d.waits.Add(1)
		return false
	}
	rec := Record{Business: business, RunID: spec.RunID, Fate: f, Err: err, EndReason: run.EndReason,
		Outcome: d.outcome(spec.RunID, f, err)}
	if rec.Outcome == OutError && run.RunID == "" && d.runsCtx.Err() != nil {
		return true // the demo stopped before the run started
	}
	d.record(rec)
	if f != FateCrash {
		d.settle(business, spec.RunID, fmt.Sprintf("last run %s: %s", d.short(spec.RunID), rec.Outcome))
	}
	return true
}

// outcome is how a run of fate f ended, from the error its Run returned.
func (d *demo) outcome(runID string, f Fate, err error) Outcome {
	d.mu.Lock()
	byDemo := d.endedBy[runID]
	d.mu.Unlock()
	switch {
	case err == nil:
		return OutCompleted
	case (f == FateCrash || f == FateDead) && errors.Is(err, errCrashed):
		return OutCrashed
	case errors.Is(err, client.ErrCancelRequested) && byDemo:
		return OutEnded
	case errors.Is(err, client.ErrCancelRequested):
		return OutCancelled
	case errors.Is(err, errCarrier):
		return OutFailed
	case errors.Is(err, client.ErrRunEnded), errors.Is(err, client.ErrLivenessLost):
		return OutFenced
	}
	return OutError
}

// stopped is work's error when its context ends: the SDK's cause (cancel,
// fencing) as is, or the demo's last-resort stop.
func stopped(ctx context.Context) error {
	cause := context.Cause(ctx)
	if errors.Is(cause, client.ErrCancelRequested) || errors.Is(cause, client.ErrRunEnded) || errors.Is(cause, client.ErrLivenessLost) {
		return cause
	}
	return errAborted
}

// user is the simulated user of a run whose fate is cancel or pause.
func (d *demo) user(ctx context.Context, business, runID string, f Fate, hold time.Duration) {
	u := d.users[business]
	switch f {
	case FateCancel:
		finish, send := d.startUserCancel(runID)
		if !send {
			return
		}
		d.setBusiness(business, runID, f, "user pressed Cancel")
		_, err := u.CancelRun(ctx, business, runID, reasonCancel)
		finish(err == nil)
		if err != nil && !errors.Is(err, client.ErrRunEnded) && ctx.Err() == nil {
			d.notef("cancel %s: %v", d.short(runID), err)
		}
	case FatePause:
		if _, err := u.PauseRun(ctx, business, runID, "the user pressed Pause (demo)"); err != nil {
			if !errors.Is(err, client.ErrRunEnded) && ctx.Err() == nil {
				d.notef("pause %s: %v", d.short(runID), err)
			}
			return
		}
		d.pauses.Add(1)
		d.setBusiness(business, runID, f, "paused by the user")
		sleep(ctx, hold)
		// Resume even if the run is ending: a pause must not outlive its user.
		if _, err := u.ResumeRun(context.WithoutCancel(ctx), business, runID, "the user pressed Resume (demo)"); err == nil {
			d.setBusiness(business, runID, f, "resumed")
		} else if !errors.Is(err, client.ErrRunEnded) {
			d.notef("resume %s: %v", d.short(runID), err)
		}
	}
}

// mayCrash reports whether a run of business may crash: fewer than half the
// businesses (at least one) are blocked by a crashed run, not this one, and
// the run's TTL passes before the demo ends (so the reaper ends it on screen).
func (d *demo) mayCrash(business string) bool {
	if !d.deadline.IsZero() && time.Now().Add(d.ttl+d.ttl/10+time.Second).After(d.deadline) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.blocked[business] && len(d.blocked) < max(1, len(d.businesses)/2)
}

// setBlocked records that a crashed run holds business (until a new run starts there).
func (d *demo) setBlocked(business string, blocked bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if blocked {
		d.blocked[business] = true
	} else {
		delete(d.blocked, business)
	}
}

func (d *demo) isEnding() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ending
}

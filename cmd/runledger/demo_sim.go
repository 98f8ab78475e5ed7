package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api/client"
	"github.com/runledger/runledger/projections"
)

// fate is what the demo makes happen to one run.
type fate string

const (
	fateNormal fate = "normal" // dials the list; some calls fail
	fateFail   fate = "fail"   // the work returns an error midway: the run fails
	fateCrash  fate = "crash"  // the process "dies" midway: heartbeats stop, nothing completes; the reaper ends it
	fateCancel fate = "cancel" // a user presses Cancel midway: the worker stops, the run ends cancelled
	fatePause  fate = "pause"  // a user pauses, then resumes (where the server offers pause)
)

// fateDeck is dealt in turn to each worker, from a different place each, so
// every case shows early: 40% normal, 20% cancel, 20% pause, 10% fail, 10%
// crash. A crash is played only on a worker's second run or later, and only
// while fewer than half the businesses are blocked by one (a crashed run
// holds its business until its TTL passes, 15 minutes by default), else the
// run is normal.
var fateDeck = []fate{fateNormal, fateCancel, fatePause, fateFail, fateCrash, fateNormal, fateCancel, fatePause, fateNormal, fateNormal}

// Outcomes of a run as the demo saw them.
const (
	outCompleted   = "completed"
	outFailed      = "failed"
	outCancelled   = "cancelled"
	outCrashed     = "crashed"     // left to the reaper
	outInterrupted = "interrupted" // the demo stopped: completed as failed
	outFenced      = "fenced"      // the SDK stopped the work (run ended elsewhere, or contact lost)
	outError       = "error"       // anything unexpected
)

// runRecord is one run the demo started.
type runRecord struct {
	business, runID string
	fate            fate
	outcome         string
	err             error
}

// errCarrier is the failure of a run whose fate is fail.
var errCarrier = errors.New("carrier rejected the batch (simulated)")

// errCrashed is what a crashed worker's transport answers from then on.
var errCrashed = errors.New("simulated crash: the worker process is gone")

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

// worker is one simulated dialer: it runs one run after another on its
// business until ctx ends.
func (d *demo) worker(ctx context.Context, i int) {
	business := d.businesses[i%len(d.businesses)]
	rng := rand.New(rand.NewPCG(d.cfg.Seed, uint64(i)))
	for k := 0; ctx.Err() == nil; k++ {
		f := fateDeck[(i+k*len(d.businesses))%len(fateDeck)]
		if f == fateCrash && (k == 0 || !d.mayCrash(business)) { // a first run never crashes: the page shows progress first
			f = fateNormal
		}
		if !d.runOnce(ctx, rng, i, business, f) {
			// Another run of the business is active: wait, as a real dialer
			// whose start was refused would, and try again with the same fate.
			k--
			sleep(ctx, time.Duration(500+rng.IntN(1500))*time.Millisecond)
		}
	}
}

// runOnce runs one run with fate f; false if it could not start because
// another run of the business is active.
func (d *demo) runOnce(ctx context.Context, rng *rand.Rand, i int, business string, f fate) bool {
	transport := &crashTransport{base: d.transport}
	opts := client.Options{BaseURL: d.cfg.URL, Token: d.workerTokens[business], WorkerID: fmt.Sprintf("dialer-%d", i+1),
		HTTPClient: &http.Client{Transport: transport}, Logger: d.logger}
	c, err := client.New(opts)
	if err != nil {
		d.fail(business, "", f, err)
		return true
	}
	runID := uuid.Must(uuid.NewV7())
	d.mu.Lock()
	d.runIDs = append(d.runIDs, runID)
	d.mu.Unlock()
	spec := client.RunSpec{RunID: runID.String(),
		TotalCalls: d.cfg.CallsMin + rng.IntN(d.cfg.CallsMax-d.cfg.CallsMin+1)}
	if d.perRunTTL.Load() {
		spec.StaleAfter = d.cfg.StaleAfter
	}
	stopAt := 1 + rng.IntN(max(1, spec.TotalCalls*2/3)) // where a fail or crash strikes
	callTime := func() time.Duration {
		return d.cfg.CallMin + time.Duration(rng.Int64N(int64(d.cfg.CallMax-d.cfg.CallMin)+1))
	}
	// The user acts at a random point of the run's expected length.
	userDelay := time.Duration(float64(spec.TotalCalls) * float64(d.cfg.CallMin+d.cfg.CallMax) / 2 * (0.2 + 0.4*rng.Float64()))
	var callMu sync.Mutex // rng is not safe for concurrent use; work and the user share it

	userCtx, stopUser := context.WithCancel(ctx)
	var userDone sync.WaitGroup
	started := make(chan struct{})
	var startOnce sync.Once
	work := func(ctx context.Context, p *client.Progress) error {
		startOnce.Do(func() { close(started); d.setBusiness(business, spec.RunID, f, ""); d.setBlocked(business, false) })
		for n := 0; n < spec.TotalCalls; n++ {
			if err := p.WaitIfPaused(ctx); err != nil {
				return d.workStopped(ctx, err)
			}
			if ctx.Err() != nil {
				return d.workStopped(ctx, context.Cause(ctx))
			}
			if n == stopAt {
				switch f {
				case fateFail:
					return errCarrier
				case fateCrash:
					transport.crashed.Store(true)
					d.setBlocked(business, true)
					d.setBusiness(business, spec.RunID, f, "worker crashed: waiting for the reaper")
					return errCrashed
				}
			}
			callMu.Lock()
			dur, ok := callTime(), rng.Float64() > 0.12 // no answer, busy, wrong number
			callMu.Unlock()
			d.calls.Add(1)
			if !sleep(ctx, dur) {
				return d.workStopped(ctx, context.Cause(ctx))
			}
			if ok {
				p.Add(1, 0)
			} else {
				p.Add(0, 1)
			}
		}
		return nil
	}
	if f == fateCancel || f == fatePause {
		userDone.Add(1)
		go func() {
			defer userDone.Done()
			select {
			case <-started:
			case <-userCtx.Done():
				return
			}
			if sleep(userCtx, userDelay) {
				d.user(userCtx, rng, &callMu, business, spec.RunID, f)
			}
		}()
	}
	run, err := c.Run(ctx, business, spec, work)
	stopUser()
	userDone.Wait()
	c.CloseIdleConnections()

	var apiErr *client.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Code == client.CodeActiveRunExists:
		d.conflicts.Add(1)
		return false
	case spec.StaleAfter > 0 && errors.As(err, &apiErr) && apiErr.Code == client.CodeValidationFailed &&
		len(apiErr.Fields) > 0 && apiErr.Fields[0].Field == "stale_after":
		d.perRunTTL.Store(false)
		d.notef("this server does not take a per-run stale_after yet: crashed runs are reaped after the server's TTL (%s)",
			time.Duration(d.policy.StaleAfter))
		return false
	}
	rec := runRecord{business: business, runID: spec.RunID, fate: f, err: err}
	switch {
	case err == nil:
		rec.outcome = outCompleted
	case f == fateCrash && errors.Is(err, errCrashed):
		rec.outcome = outCrashed
	case errors.Is(err, client.ErrCancelRequested):
		rec.outcome = outCancelled
	case errors.Is(err, errCarrier):
		rec.outcome = outFailed
	case errors.Is(err, errDemoStopped):
		rec.outcome = outInterrupted
	case errors.Is(err, client.ErrRunEnded), errors.Is(err, client.ErrLivenessLost):
		rec.outcome = outFenced
	default:
		rec.outcome = outError
	}
	if rec.outcome == outError && run.RunID == "" && ctx.Err() != nil {
		return true // the demo stopped before the run started
	}
	d.record(rec)
	if f != fateCrash {
		d.setBusiness(business, "", "", fmt.Sprintf("last run %s: %s", d.short(spec.RunID), rec.outcome))
	}
	return true
}

// errDemoStopped is how work ends when the demo stops (the run is then
// completed as failed with this message).
var errDemoStopped = errors.New("demo stopped")

// workStopped is work's error when its context ends: the SDK's cause
// (cancel, fencing) as is, the demo's own stop as errDemoStopped.
func (d *demo) workStopped(ctx context.Context, cause error) error {
	if errors.Is(cause, client.ErrCancelRequested) || errors.Is(cause, client.ErrRunEnded) || errors.Is(cause, client.ErrLivenessLost) {
		return cause
	}
	return fmt.Errorf("%w: %v", errDemoStopped, cause)
}

// user is the simulated user of a run whose fate is cancel or pause.
func (d *demo) user(ctx context.Context, rng *rand.Rand, mu *sync.Mutex, business, runID string, f fate) {
	u := d.users[business]
	switch f {
	case fateCancel:
		d.setBusiness(business, runID, f, "user pressed Cancel")
		if _, err := u.CancelRun(ctx, business, runID, "user pressed Cancel (demo)"); err != nil && !errors.Is(err, client.ErrRunEnded) && ctx.Err() == nil {
			d.notef("cancel %s: %v", d.short(runID), err)
		}
	case fatePause:
		if !d.pauseOffered.Load() {
			return
		}
		_, err := u.PauseRun(ctx, business, runID, "user pressed Pause (demo)")
		var apiErr *client.Error
		if errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusMethodNotAllowed) && apiErr.Code != client.CodeRunEnded {
			if d.pauseOffered.CompareAndSwap(true, false) {
				d.notef("this server does not offer pause/resume yet: pause runs dial on")
			}
			return
		}
		if err != nil {
			if !errors.Is(err, client.ErrRunEnded) && ctx.Err() == nil {
				d.notef("pause %s: %v", d.short(runID), err)
			}
			return
		}
		d.pauses.Add(1)
		d.setBusiness(business, runID, f, "paused by the user")
		mu.Lock()
		hold := d.cfg.PauseHold + time.Duration(rng.Int64N(int64(d.cfg.PauseHold)*3/2+1))
		mu.Unlock()
		sleep(ctx, hold)
		// Resume even if the run is ending: a pause must not outlive its user.
		if _, err := u.ResumeRun(context.WithoutCancel(ctx), business, runID, "user pressed Resume (demo)"); err == nil {
			d.setBusiness(business, runID, f, "resumed")
		} else if !errors.Is(err, client.ErrRunEnded) {
			d.notef("resume %s: %v", d.short(runID), err)
		}
	}
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// short names a run by the audit's rule (projections.ShortIDs): the tail of
// its id, lengthened until no two runs this demo started read the same.
func (d *demo) short(id string) string {
	u, err := uuid.Parse(id)
	if err != nil {
		return id
	}
	d.mu.Lock()
	ids := append(append([]uuid.UUID(nil), d.runIDs...), u)
	d.mu.Unlock()
	return "…" + projections.ShortIDs(ids)[u]
}

// mayCrash reports whether a run of business may crash: fewer than half the
// businesses (at least one) are blocked by a crashed run, and not this one.
func (d *demo) mayCrash(business string) bool {
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

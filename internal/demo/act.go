package demo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/runledger/runledger/api/client"
)

// actBusinesses is how many businesses the opening act plays on at once:
// one for the short endings in turn, and one each for the endings that take
// a TTL or a stall threshold (a crashed worker reaped, a dead worker's run
// cancelled, a stall).
const actBusinesses = 4

// The reasons the demo's simulated users give.
const (
	reasonCancel = "the user pressed Cancel (demo)"
	reasonDead   = "the worker is gone: the user cancelled its silent run (demo)"
)

// startAct plays the opening act, deterministically, on the first four
// businesses, each released to the random dialing when its part is over:
//
//   - demo:   a completion, a pause and resume, a user's graceful cancel, a
//     carrier failure (the worker reports it), one after another;
//   - demo-2: a worker that crashes after its start, reaped as stale at its TTL;
//   - demo-3: a worker that dies at once, whose silent run a user cancels
//     the moment it is silent past its TTL (a forced cancel);
//   - demo-4: a worker that heartbeats without progress until the run is
//     flagged stalled, then dials on and completes.
func (d *demo) startAct(ctx context.Context, wg *sync.WaitGroup) {
	if len(d.businesses) < actBusinesses {
		d.notef("the opening act needs %d businesses (--businesses %d): skipped", actBusinesses, actBusinesses)
		for _, st := range d.biz {
			close(st.actDone)
		}
		return
	}
	for i := actBusinesses; i < len(d.businesses); i++ {
		close(d.biz[d.businesses[i]].actDone)
	}
	d.acting.Store(true)
	var lanesDone sync.WaitGroup
	lanes := []func(context.Context, string){d.actShortEndings, d.actCrash, d.actDeadWorker, d.actStall}
	for i, play := range lanes {
		b := d.businesses[i]
		wg.Add(1)
		lanesDone.Add(1)
		go func() {
			defer wg.Done()
			defer lanesDone.Done()
			defer close(d.biz[b].actDone)
			play(ctx, b)
			d.setBusiness(b, "", "", "opening act done: "+d.lastOutcome(b))
		}()
	}
	go func() { lanesDone.Wait(); d.acting.Store(false) }()
}

// actShortEndings plays the endings that take seconds, in turn.
func (d *demo) actShortEndings(ctx context.Context, b string) {
	call := d.cfg.ActCall
	steps := []struct {
		fate  Fate
		title string
		calls int
	}{
		{FateNormal, "act 1/4: a run completes", 12},
		{FatePause, "act 2/4: the user pauses, then resumes", 16},
		{FateCancel, "act 3/4: the user cancels; the worker stops at its next heartbeat", 40},
		{FateFail, "act 4/4: the carrier fails; the worker reports it", 30},
	}
	for _, s := range steps {
		if ctx.Err() != nil {
			return
		}
		var user func(ctx context.Context, runID string)
		switch s.fate {
		case FatePause:
			user = func(ctx context.Context, runID string) {
				if sleep(ctx, 3*call) {
					d.user(ctx, b, runID, FatePause, 8*call)
				}
			}
		case FateCancel:
			user = func(ctx context.Context, runID string) {
				if sleep(ctx, 4*call) {
					d.user(ctx, b, runID, FateCancel, 0)
				}
			}
		}
		failAt := -1
		if s.fate == FateFail {
			failAt = 5
		}
		d.actRun(ctx, b, 1, s.fate, s.title, s.calls, func(ctx context.Context, p *client.Progress, _ *crashTransport) error {
			return d.dial(ctx, p, s.calls, failAt)
		}, user)
		sleep(ctx, 2*call)
	}
}

// actCrash: the worker dials a call or two and dies before its first
// heartbeat; its last sign of life is the start, so the run is silent past
// its TTL one TTL after it started, and the reaper ends it as stale.
func (d *demo) actCrash(ctx context.Context, b string) {
	id := d.actRun(ctx, b, 2, FateCrash, fmt.Sprintf("act: the worker crashes; the reaper ends the run %s after its start", d.ttl), 20,
		func(ctx context.Context, p *client.Progress, tr *crashTransport) error {
			if err := d.dial(ctx, p, 2, -1); err != nil {
				return err
			}
			tr.crashed.Store(true)
			return errCrashed
		}, nil)
	if id != "" {
		d.awaitEnd(ctx, b, id, "worker crashed: silent; the reaper ends the run at its TTL")
	}
}

// deadWorkerAttempts bounds how often the dead-worker act is played when
// the reaper ends the silent run before the user's cancel lands.
const deadWorkerAttempts = 3

// actDeadWorker: the worker dies at once; the user presses Cancel the moment
// the run is silent past its TTL, which ends it at once (a forced cancel).
// The reaper wakes at that same moment: if it ends the run first (the run
// ends as stale), the act is played again with another dead worker, at most
// deadWorkerAttempts times.
func (d *demo) actDeadWorker(ctx context.Context, b string) {
	for attempt := 1; attempt <= deadWorkerAttempts && ctx.Err() == nil && !d.isEnding(); attempt++ {
		id := d.actRun(ctx, b, 3, FateDead, fmt.Sprintf("act: the worker dies; the user cancels its silent run at its TTL (%s)", d.ttl), 20,
			func(ctx context.Context, p *client.Progress, tr *crashTransport) error {
				tr.crashed.Store(true)
				return errCrashed
			}, nil)
		if id == "" {
			return
		}
		d.setBusiness(b, id, FateDead, "worker dead: the user cancels the run once it is silent past its TTL")
		run, err := d.cancelWhenSilent(ctx, b, id)
		switch {
		case err == nil && run.EndReason == "cancel_forced":
			d.setOutcome(id, OutForced, run.EndReason)
			return
		case errors.Is(err, client.ErrRunEnded):
			d.notef("run %s: the reaper ended it a moment before the user's cancel (both act at its TTL); played again", d.short(id))
			d.awaitEnd(ctx, b, id, "")
		case err != nil:
			d.notef("cancel %s: %v", d.short(id), err)
			d.awaitEnd(ctx, b, id, "")
			return
		default: // graceful: the cancel arrived before the TTL passed; the reaper ends it as cancelled
			d.awaitEnd(ctx, b, id, "cancel requested; the reaper ends the silent run at its TTL")
			return
		}
	}
}

// actStall: the worker heartbeats without progress ("waiting for the
// carrier") until the server flags the run stalled, then dials on and
// completes, which clears the flag.
func (d *demo) actStall(ctx context.Context, b string) {
	d.actRun(ctx, b, 4, FateStall, fmt.Sprintf("act: the worker heartbeats without progress; the run is flagged stalled after %s", d.stall), 10,
		func(ctx context.Context, p *client.Progress, _ *crashTransport) error {
			u := d.users[b]
			deadline := time.Now().Add(d.stall + 30*time.Second)
			for time.Now().Before(deadline) {
				if !sleep(ctx, d.cfg.Poll) {
					return stopped(ctx)
				}
				run, err := u.GetRun(ctx, b, p.RunID())
				if err == nil && run.Stalled {
					d.stalls.Add(1)
					d.setBusiness(b, p.RunID(), FateStall, "stalled: no progress for "+d.stall.String()+"; the worker dials on shortly")
					break
				}
			}
			if !sleep(ctx, 6*d.cfg.ActCall) {
				return stopped(ctx)
			}
			return d.dial(ctx, p, 10, -1)
		}, nil)
}

// actRun runs one scripted run on business b as dialer n: work does the
// dialing, user (if any) acts beside it once the run has started. It returns
// the run's id, or "" if the run never started. A start refused because
// another run is active (one left from before the demo) is retried.
func (d *demo) actRun(ctx context.Context, b string, n int, f Fate, title string, total int,
	work func(context.Context, *client.Progress, *crashTransport) error, user func(context.Context, string)) string {
	for ctx.Err() == nil && !d.isEnding() {
		c, tr, err := d.newWorker(b, 100+n, f)
		if err != nil {
			d.fail(b, "", f, err)
			return ""
		}
		spec := d.spec(total)
		started := make(chan struct{})
		var once sync.Once
		userCtx, stopUser := context.WithCancel(ctx)
		var userDone sync.WaitGroup
		if user != nil {
			userDone.Add(1)
			go func() {
				defer userDone.Done()
				select {
				case <-started:
					user(userCtx, spec.RunID)
				case <-userCtx.Done():
				}
			}()
		}
		run, err := c.Run(d.runsCtx, b, spec, func(ctx context.Context, p *client.Progress) error {
			once.Do(func() { d.began(b, spec.RunID, f, title); close(started) })
			return work(ctx, p, tr)
		})
		d.joinSession(b, c)
		stopUser()
		userDone.Wait()
		c.CloseIdleConnections()
		var apiErr *client.Error
		if errors.As(err, &apiErr) && apiErr.Code == client.CodeActiveRunExists {
			d.waits.Add(1)
			d.setBusiness(b, "", f, fmt.Sprintf("opening act waits: run %s from before the demo is still open", d.short(apiErr.RunID)))
			sleep(ctx, 2*time.Second)
			continue
		}
		out := d.outcome(spec.RunID, f, err)
		d.record(Record{Business: b, RunID: spec.RunID, Fate: f, Outcome: out, EndReason: run.EndReason, Err: err})
		if out != OutCrashed {
			d.settle(b, spec.RunID, fmt.Sprintf("run %s: %s", d.short(spec.RunID), out))
		}
		return spec.RunID
	}
	return ""
}

// dial places calls one after another, reporting each; it fails the run
// with the carrier's error at call failAt (-1: never).
func (d *demo) dial(ctx context.Context, p *client.Progress, calls, failAt int) error {
	for n := 0; n < calls; n++ {
		if err := p.WaitIfPaused(ctx); err != nil || ctx.Err() != nil {
			return stopped(ctx)
		}
		if n == failAt {
			return errCarrier
		}
		d.calls.Add(1)
		if !sleep(ctx, d.cfg.ActCall) {
			return stopped(ctx)
		}
		if n%5 == 4 {
			p.Add(0, 1) // no answer
		} else {
			p.Add(1, 0)
		}
	}
	return nil
}

// awaitEnd waits (polling) until the run has ended, up to its TTL and a
// margin, and records the server's end_reason as the run's outcome.
func (d *demo) awaitEnd(ctx context.Context, b, id, note string) {
	if note != "" {
		d.setBusiness(b, id, FateCrash, note)
	}
	deadline := time.Now().Add(d.ttl + 30*time.Second)
	for time.Now().Before(deadline) {
		run, err := d.users[b].GetRun(ctx, b, id)
		if err == nil && run.Ended() {
			out := map[string]Outcome{"stale": OutStale, "cancel_forced": OutForced, "cancelled": OutCancelled}[run.EndReason]
			if d.wasEndedByDemo(id) && run.EndReason == "cancelled" {
				out = OutEnded
			}
			if out == "" {
				out = OutError
			}
			d.setOutcome(id, out, run.EndReason)
			return
		}
		if !sleep(ctx, d.cfg.Poll) {
			return
		}
	}
	d.notef("run %s: not ended %s after its worker crashed (is the reaper running?)", d.short(id), d.ttl+30*time.Second)
}

// began records that run id of business b has started, with what the demo
// does to it; a run that starts while the demo is ending is asked to stop
// at once.
func (d *demo) began(b, id string, f Fate, note string) {
	d.mu.Lock()
	st := d.biz[b]
	st.runID, st.fate, st.note = id, f, note
	ending := d.ending
	d.runsStarted.Add(1)
	if ending {
		d.endedBy[id] = true
	}
	delete(d.blocked, b)
	d.mu.Unlock()
	if ending {
		go func() {
			if _, err := d.users[b].CancelRun(context.WithoutCancel(d.runsCtx), b, id, endReason); err != nil && !errors.Is(err, client.ErrRunEnded) {
				d.notef("cancel %s at the end: %v", d.short(id), err)
			}
		}()
	}
}

// setOutcome updates the record of run id once its end is known.
func (d *demo) setOutcome(id string, out Outcome, endReason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.records {
		if d.records[i].RunID == id {
			d.records[i].Outcome, d.records[i].EndReason = out, endReason
		}
	}
}

func (d *demo) wasEndedByDemo(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.endedBy[id]
}

// lastOutcome describes the last run recorded on business b.
func (d *demo) lastOutcome(b string) string {
	var id string
	var out Outcome
	d.mu.Lock()
	for i := len(d.records) - 1; i >= 0; i-- {
		if d.records[i].Business == b {
			id, out = d.records[i].RunID, d.records[i].Outcome
			break
		}
	}
	d.mu.Unlock()
	if id == "" {
		return "no run"
	}
	return fmt.Sprintf("run %s %s", d.short(id), out)
}

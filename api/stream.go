package api

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/internal/clock"
	"github.com/runledger/runledger/projections"
)

// SSE event names of …/runs/active/stream.
const (
	sseRun      = "run"      // the run changed (also the first event: its current state)
	sseEnded    = "ended"    // the run reached its terminal state; the stream ends
	sseInactive = "inactive" // the run went silent past its TTL; the stream ends
)

// recheckBehind is how soon a stream looks again when its read model was
// too far behind to judge the run silent.
const recheckBehind = 250 * time.Millisecond

// streamActive sends the active run's state at once, then each change, then
// its terminal state, and ends. It costs no query until something changes:
// the change feed wakes it (with the row, when this replica's projector
// wrote it; else one read shared by every watcher of the run), and the
// moment the run would go silent is a timer at its stale_at, re-armed on
// each change. Event ids are log positions, so a client that reconnects
// with Last-Event-ID is not sent a state it has seen.
func (s *Server) streamActive(w http.ResponseWriter, r *http.Request, c call) error {
	a, wait, err := s.openActive(r, c)
	switch {
	case err != nil:
		return err
	case wait:
		return s.streamBusiness(w, r, c) // stream_wait.go
	}
	return s.serveSSE(w, r, a.end, func(ctx context.Context, st *sseStream) {
		_ = st.follow(ctx, a.sub, c.business, &a.cur)
	})
}

// activeStream is a run stream about to start: its subscription, what
// gives it and its slot back (end), and the run's state to send first.
type activeStream struct {
	sub *runChanges
	end func()
	cur projections.RunRow
}

// openActive checks the request and the run and follows its changes, or
// reports that it is a business stream (wait), or the problem to answer
// with. It is kept out of streamActive's frame (see follow).
//
//go:noinline
func (s *Server) openActive(r *http.Request, c call) (a *activeStream, wait bool, err error) {
	if s.cfg.Feed == nil {
		return nil, false, newProblem(CodeInternal, "this server has no change feed")
	}
	if err := s.awaitApplied(r, projections.Names...); err != nil { // it reads active_runs, then runs
		return nil, false, err
	}
	for _, name := range projections.Names {
		if err := s.readModelFresh(name); err != nil {
			return nil, false, err
		}
	}
	if wait, err := wantsWait(r); err != nil || wait {
		return nil, wait, err
	}
	open, ok, err := projections.GetOpenRun(r.Context(), s.pool, c.business)
	if err != nil {
		return nil, false, err
	}
	if !ok || !open.Active(s.now(), s.policy.StaleAfter) {
		return nil, false, newProblem(CodeNoActiveRun, "the business has no active run")
	}
	sub, end, err := s.followBusiness(c)
	if err != nil {
		return nil, false, err
	}
	// Read the run again now that changes are followed: nothing committed
	// between the first read and the subscription is missed. The runs read
	// model may be behind active_runs (another consumer group): then the
	// open row is the newest state, and the runs model's commits to come
	// reach the subscription.
	cur, ok, err := s.fetchRun(r.Context(), c.business, open.ID)
	if err != nil {
		end()
		return nil, false, err
	}
	if !ok || cur.Version < open.Version {
		cur = open
	}
	return &activeStream{sub: sub, end: end, cur: cur}, false, nil
}

// follow sends cur and what follows it until the run ends, goes silent, the
// client leaves or the server shuts down.
//
// A stream's goroutine waits here (in await) almost all its life, and what
// its stack holds while it waits is what each watcher costs. The work of a
// wake (JSON, SQL, the write) needs 8 to 16 KiB of stack, and a stack grown
// once a second by each wake would never shrink at GC; so that work runs in
// the follower's methods on a goroutine of its own (offStack), and this
// goroutine keeps the small stack it waits on. The state lives in the
// follower, on the heap.
func (st *sseStream) follow(ctx context.Context, sub *runChanges, business string, cur *projections.RunRow) error {
	f := st.newFollower(sub, business, cur)
	defer f.silence.Stop()
	if !offStack(func() bool { return f.show(cur) }) {
		return nil
	}
	for {
		var goOn bool
		switch st.await(ctx, sub.C(), f.silence.C()) {
		case streamGone:
			return nil
		case feedChanged:
			goOn = offStack(func() bool { return f.changed(ctx) })
		case timerFired: // silence
			goOn = offStack(f.silent)
		}
		if !goOn {
			return nil
		}
	}
}

// follower is the state of follow: the run followed and the timer at the
// moment it would go silent.
type follower struct {
	st       *sseStream
	sub      *runChanges
	business string
	cur      projections.RunRow
	silence  clock.Timer // on the server's clock
}

//go:noinline
func (st *sseStream) newFollower(sub *runChanges, business string, cur *projections.RunRow) *follower {
	return &follower{st: st, sub: sub, business: business, cur: *cur, silence: st.s.cfg.NewTimer(0)}
}

// show sends row if the client has not seen it and re-arms the silence
// timer; it reports whether the stream goes on.
//
//go:noinline
func (f *follower) show(row *projections.RunRow) bool {
	st, s := f.st, f.st.s
	switch {
	case row.Ended():
		st.send(sseEnded, *row)
		return false
	case row.LastPosition > st.lastID:
		st.send(sseRun, *row)
	}
	f.cur = *row
	f.silence.Reset(max(0, row.StaleAt(s.policy.StaleAfter).Sub(s.now())))
	return !st.failed
}

// changed shows the followed run's newest state after the change feed
// signalled; it reports whether the stream goes on.
//
//go:noinline
func (f *follower) changed(ctx context.Context) bool {
	row, ok, err := f.st.latest(ctx, f.sub, f.business, f.cur)
	if err != nil {
		return false // the client reconnects and gets a problem it can act on
	}
	return !ok || row.Version <= f.cur.Version || f.show(&row)
}

// silent handles the silence timer: it re-arms it while the run is active
// or its read model too far behind to judge, else sends "inactive"; it
// reports whether the stream goes on.
//
//go:noinline
func (f *follower) silent() bool {
	s := f.st.s
	if f.cur.Active(s.now(), s.policy.StaleAfter) {
		f.silence.Reset(max(0, f.cur.StaleAt(s.policy.StaleAfter).Sub(s.now())))
		return true
	}
	if s.readModelFresh(projections.Runs) != nil {
		f.silence.Reset(recheckBehind) // its heartbeats may not be applied yet: do not judge
		return true
	}
	f.st.send(sseInactive, f.cur)
	return false
}

// latest is the newest state of the followed run after a change: from the
// change itself when it carried the row, else read (once for every watcher).
func (st *sseStream) latest(ctx context.Context, sub *runChanges, business string, cur projections.RunRow) (projections.RunRow, bool, error) {
	rows, mustRead := sub.Take()
	for _, r := range rows {
		if r.ID == cur.ID {
			return r, true, nil
		}
	}
	if !mustRead {
		return projections.RunRow{}, false, nil // another run of the business moved
	}
	return st.s.fetchRun(ctx, business, cur.ID) // not there yet: nothing newer to show
}

// fetchRun reads a run from the runs read model, and whether it is there
// (the model may not have applied its start yet); concurrent reads of one
// run (every watcher woken by one change) share a single query.
func (s *Server) fetchRun(ctx context.Context, business string, runID uuid.UUID) (projections.RunRow, bool, error) {
	type found struct {
		row projections.RunRow
		ok  bool
	}
	v, err, _ := s.runReads.Do(business+"/"+runID.String(), func() (any, error) {
		row, ok, err := projections.GetRun(context.WithoutCancel(ctx), s.pool, business, runID)
		return found{row, ok}, err
	})
	if err != nil {
		return projections.RunRow{}, false, err
	}
	f := v.(found)
	return f.row, f.ok, nil
}

package api

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"

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
	if s.cfg.Feed == nil {
		return newProblem(CodeInternal, "this server has no change feed")
	}
	if err := s.awaitApplied(r, projections.Names...); err != nil { // it reads active_runs, then runs
		return err
	}
	for _, name := range projections.Names {
		if err := s.readModelFresh(name); err != nil {
			return err
		}
	}
	if wait, err := wantsWait(r); err != nil || wait {
		if err != nil {
			return err
		}
		return s.streamBusiness(w, r, c) // stream_wait.go
	}
	open, ok, err := projections.GetOpenRun(r.Context(), s.pool, c.business)
	if err != nil {
		return err
	}
	if !ok || !open.Active(s.now(), s.policy.StaleAfter) {
		return newProblem(CodeNoActiveRun, "the business has no active run")
	}
	sub, end, err := s.followBusiness(c)
	if err != nil {
		return err
	}
	defer end()
	// Read the run again now that changes are followed: nothing committed
	// between the first read and the subscription is missed. The runs read
	// model may be behind active_runs (another consumer group): then the
	// open row is the newest state, and the runs model's commits to come
	// reach the subscription.
	cur, ok, err := s.fetchRun(r.Context(), c.business, open.ID)
	if err != nil {
		return err
	}
	if !ok || cur.Version < open.Version {
		cur = open
	}
	st := s.startSSE(w, r)
	defer st.stop()
	return st.follow(r.Context(), sub, c.business, cur)
}

// follow sends cur and what follows it until the run ends, goes silent, the
// client leaves or the server shuts down.
func (st *sseStream) follow(ctx context.Context, sub *runChanges, business string, cur projections.RunRow) error {
	s := st.s
	silence := s.cfg.NewTimer(0) // on the server's clock
	defer silence.Stop()
	show := func(row projections.RunRow) bool { // reports whether the stream goes on
		switch {
		case row.Ended():
			st.send(sseEnded, row)
			return false
		case row.LastPosition > st.lastID:
			st.send(sseRun, row)
		}
		cur = row
		silence.Reset(max(0, row.StaleAt(s.policy.StaleAfter).Sub(s.now())))
		return !st.failed
	}
	if !show(cur) {
		return nil
	}
	for {
		switch st.await(ctx, sub.C(), silence.C()) {
		case streamGone:
			return nil
		case feedChanged:
			row, ok, err := st.latest(ctx, sub, business, cur)
			if err != nil {
				return nil // the client reconnects and gets a problem it can act on
			}
			if ok && row.Version > cur.Version && !show(row) {
				return nil
			}
		case timerFired: // silence
			if cur.Active(s.now(), s.policy.StaleAfter) {
				silence.Reset(max(0, cur.StaleAt(s.policy.StaleAfter).Sub(s.now())))
				continue
			}
			if s.readModelFresh(projections.Runs) != nil {
				silence.Reset(recheckBehind) // its heartbeats may not be applied yet: do not judge
				continue
			}
			st.send(sseInactive, cur)
			return nil
		}
	}
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

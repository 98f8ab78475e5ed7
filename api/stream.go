package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
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
	release, err := s.streams.acquire(c.token)
	if err != nil {
		return err
	}
	defer release()
	sub := s.cfg.Feed.Subscribe(c.business)
	defer sub.Close()
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
	st := &sseStream{s: s, w: w, rc: http.NewResponseController(w)}
	st.lastID, _ = strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64)
	st.start()
	return st.follow(r.Context(), sub, c.business, cur)
}

// sseStream writes one client's events.
type sseStream struct {
	s      *Server
	w      http.ResponseWriter
	rc     *http.ResponseController
	lastID int64
	failed bool // the client is gone

	// lastEvent is the last run event sent (stream_wait.go: how a followed run left).
	lastEvent string
}

func (st *sseStream) start() {
	_ = st.rc.SetWriteDeadline(time.Time{}) // the server's write timeout must not cut a stream
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	st.w.WriteHeader(http.StatusOK)
	st.write(fmt.Sprintf("retry: %d\n\n", time.Second.Milliseconds()))
}

func (st *sseStream) write(s string) {
	if st.failed {
		return
	}
	if _, err := fmt.Fprint(st.w, s); err != nil || st.rc.Flush() != nil {
		st.failed = true
	}
}

func (st *sseStream) send(event string, row projections.RunRow) {
	data, err := json.Marshal(st.s.rowView(row))
	if err != nil {
		st.failed = true
		return
	}
	st.write(fmt.Sprintf("id: %d\nevent: %s\ndata: %s\n\n", row.LastPosition, event, data))
	st.lastID = max(st.lastID, row.LastPosition)
	st.lastEvent = event
}

// follow sends cur and what follows it until the run ends, goes silent, the
// client leaves or the server shuts down.
func (st *sseStream) follow(ctx context.Context, sub *projections.Subscription, business string, cur projections.RunRow) error {
	s := st.s
	keepAlive := time.NewTicker(s.cfg.StreamKeepAlive)
	defer keepAlive.Stop()
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
		select {
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil // the client reconnects (with Last-Event-ID) to another replica
		case <-keepAlive.C:
			if st.write(": keepalive\n\n"); st.failed {
				return nil
			}
		case <-sub.C():
			row, ok, err := st.latest(ctx, sub, business, cur)
			if err != nil {
				return nil // the client reconnects and gets a problem it can act on
			}
			if ok && row.Version > cur.Version && !show(row) {
				return nil
			}
		case <-silence.C():
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
func (st *sseStream) latest(ctx context.Context, sub *projections.Subscription, business string, cur projections.RunRow) (projections.RunRow, bool, error) {
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

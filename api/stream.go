package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/runledger/runledger/projections"
)

// SSE event names of …/runs/active/stream.
const (
	sseRun      = "run"      // the run changed (also the first event: its current state)
	sseEnded    = "ended"    // the run reached its terminal state; the stream ends
	sseInactive = "inactive" // the run went silent past the TTL; the stream ends
)

// streamActive sends the active run's state at once, then each change, then
// its terminal state, and ends. Event ids are log positions, so a client
// that reconnects with Last-Event-ID is not sent a state it has seen.
func (s *Server) streamActive(w http.ResponseWriter, r *http.Request, c call) error {
	for _, name := range projections.Names {
		if err := s.readModelFresh(name); err != nil {
			return err
		}
	}
	release, err := s.streams.acquire(c.token)
	if err != nil {
		return err
	}
	defer release()
	row, ok, err := projections.GetOpenRun(r.Context(), s.pool, c.business)
	if err != nil {
		return err
	}
	if !ok || !row.Active(s.now(), s.policy.StaleAfter) {
		return newProblem(CodeNoActiveRun, "the business has no active run")
	}
	lastID, _ := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64)

	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // the server's write timeout must not cut a stream
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	send := func(event string, row projections.RunRow) error {
		data, err := json.Marshal(s.view(row.Run))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", row.LastPosition, event, data); err != nil {
			return err
		}
		lastID = max(lastID, row.LastPosition)
		return rc.Flush()
	}
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", s.cfg.StreamPoll.Milliseconds()*4); err != nil {
		return nil
	}
	if row.LastPosition > lastID {
		if send(sseRun, row) != nil {
			return nil
		}
	}
	poll := time.NewTicker(s.cfg.StreamPoll)
	defer poll.Stop()
	keepAlive := time.NewTicker(s.cfg.StreamKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-s.closing:
			return nil // the client reconnects (with Last-Event-ID) to another replica
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return nil
			}
		case <-poll.C:
			cur, ok, err := projections.GetRun(r.Context(), s.pool, c.business, row.ID)
			if err != nil || !ok {
				continue // a passing database error or a lagging read model: ask again
			}
			switch {
			case cur.Ended():
				_ = send(sseEnded, cur)
				return nil
			case !cur.Active(s.now(), s.policy.StaleAfter):
				_ = send(sseInactive, cur)
				return nil
			case cur.LastPosition > lastID:
				if send(sseRun, cur) != nil {
					return nil
				}
			}
		}
	}
}

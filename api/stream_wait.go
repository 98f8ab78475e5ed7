package api

import (
	"context"
	"net/http"
	"time"

	"github.com/runledger/runledger/projections"
)

// sseWaiting is the event of a business stream (…/runs/active/stream?wait=true)
// while the business has no active run: its data is {"server_time", "run"},
// run being the business's open run that is not active (silent past its
// TTL), or null. It is sent when the stream opens with no active run and
// each time the business goes back to having none.
const sseWaiting = "waiting"

// waitingView is the data of a "waiting" event.
type waitingView struct {
	ServerTime time.Time `json:"server_time"`
	Run        *RunView  `json:"run"`
}

// wantsWait reads the stream's ?wait= option: "true" keeps the stream open
// while the business has no active run, "false" or absent is the original
// contract (404 no_active_run, the stream ends with its run).
func wantsWait(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("wait"); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, fieldProblem("wait", "must be true or false")
	}
}

// streamBusiness is …/runs/active/stream?wait=true: a stream of the
// business rather than of one run, for pages that are idle most of the
// time. It stays open while no run is active ("waiting"), follows each
// active run exactly as the run stream does (run … ended or inactive), follows
// an open run that went silent until it ends ("ended", e.g. when the reaper
// ends it), and goes back to waiting. An idle stream costs no query: the
// change feed wakes it when the business moves, with the rows when this
// replica's projector wrote them; otherwise one read of the business's open
// run is shared by every stream of the business.
func (s *Server) streamBusiness(w http.ResponseWriter, r *http.Request, c call) error {
	sub, end, err := s.followBusiness(c)
	if err != nil {
		return err
	}
	defer end()
	// Read once changes are followed: nothing committed after it is missed.
	open, ok, err := s.fetchOpen(r.Context(), c.business)
	if err != nil {
		return err
	}
	st := s.startSSE(w, r)
	defer st.stop()
	ctx := r.Context()
	fromFeed := false // open came with a change (the newest state), not from active_runs
	for {
		if ok && open.Active(s.now(), s.policy.StaleAfter) {
			// active_runs may be ahead of the runs model (another consumer
			// group): the newer of the two, as streamActive does.
			if !fromFeed {
				if cur, found, err := s.fetchRun(ctx, c.business, open.ID); err == nil && found && cur.Version >= open.Version {
					open = cur
				}
			}
			if err := st.follow(ctx, sub, c.business, open); err != nil || st.failed || ctx.Err() != nil || s.isClosing() {
				return err
			}
			// The run ended or went silent: what is open now? active_runs may
			// not have applied the end the runs model told: an ended run is
			// not open, whatever it says.
			followed := open.ID
			if open, ok, err = s.fetchOpen(ctx, c.business); err != nil {
				return nil // the client reconnects and gets a problem it can act on
			}
			if ok && open.ID == followed && st.lastEvent == sseEnded {
				ok = false
			}
			fromFeed = false
			continue
		}
		var silent *projections.RunRow
		if ok {
			silent = &open
		}
		if open, ok, fromFeed, err = st.wait(ctx, sub, c.business, silent); err != nil || !ok {
			return nil // the client or the server left; or the client reconnects and gets a problem it can act on
		}
	}
}

// wait sends "waiting" and returns when the business has an active run (ok;
// fromFeed when the row came with the change rather than from a read), or
// when the client or the server leaves (st.failed, ctx, closing). silent is
// the open run that is not active, followed to its end ("ended").
func (st *sseStream) wait(ctx context.Context, sub *runChanges, business string, silent *projections.RunRow) (row projections.RunRow, ok, fromFeed bool, err error) {
	s := st.s
	st.sendWaiting(silent)
	for {
		if st.await(ctx, sub.C(), nil) == streamGone { // also once a write failed
			return projections.RunRow{}, false, false, nil
		}
		rows, mustRead := sub.Take()
		var next *projections.RunRow
		for i := range rows {
			row := rows[i]
			switch {
			case silent != nil && row.ID == silent.ID && row.Ended():
				st.send(sseEnded, row)
				silent = nil
			case silent != nil && row.ID == silent.ID:
				silent = &row
			}
			if !row.Ended() && row.Active(s.now(), s.policy.StaleAfter) && (next == nil || row.Version > next.Version) {
				next = &row
			}
		}
		if next != nil {
			return *next, true, true, nil
		}
		if !mustRead {
			continue
		}
		open, ok, err := s.fetchOpen(ctx, business)
		if err != nil {
			return projections.RunRow{}, false, false, err
		}
		if silent != nil && (!ok || open.ID != silent.ID) {
			if final, found, err := s.fetchRun(ctx, business, silent.ID); err == nil && found && final.Ended() {
				st.send(sseEnded, final)
			}
			silent = nil
		}
		if ok && open.Active(s.now(), s.policy.StaleAfter) {
			return open, true, false, nil
		}
		if ok {
			silent = &open
		}
	}
}

// sendWaiting writes a "waiting" event, with the open run that is not
// active when there is one.
func (st *sseStream) sendWaiting(silent *projections.RunRow) {
	v := waitingView{ServerTime: utc(st.s.now())}
	if silent != nil {
		rv := st.s.rowView(*silent)
		v.Run = &rv
	}
	st.sendJSON(sseWaiting, v)
}

// fetchOpen reads the business's open run (active_runs), one query for
// every stream of the business woken by one change.
func (s *Server) fetchOpen(ctx context.Context, business string) (projections.RunRow, bool, error) {
	type found struct {
		row projections.RunRow
		ok  bool
	}
	v, err, _ := s.runReads.Do("open/"+business, func() (any, error) {
		row, ok, err := projections.GetOpenRun(context.WithoutCancel(ctx), s.pool, business)
		return found{row, ok}, err
	})
	if err != nil {
		return projections.RunRow{}, false, err
	}
	f := v.(found)
	return f.row, f.ok, nil
}

// isClosing reports whether the server is shutting down.
func (s *Server) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

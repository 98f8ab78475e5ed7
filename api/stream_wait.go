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
	b, err := s.openBusiness(r, c)
	if err != nil {
		return err
	}
	return s.serveSSE(w, r, b.end, func(ctx context.Context, st *sseStream) {
		b.st = st
		_ = b.run(ctx)
	})
}

// run sends the business's stream until the client or the server leaves or
// a read fails. It waits on a small stack, its state in b and the work of
// each wake off its stack (see follow).
func (b *businessStream) run(ctx context.Context) error {
	s := b.s
	for {
		if offStack(func() bool { return b.activeNow(ctx) }) {
			if err := b.st.follow(ctx, b.sub, b.business, &b.open); err != nil || b.st.failed || ctx.Err() != nil || s.isClosing() {
				return err
			}
			if !offStack(func() bool { return b.followed(ctx) }) {
				return nil // the client reconnects and gets a problem it can act on
			}
			continue
		}
		if !b.wait(ctx) {
			return nil // the client or the server left; or the client reconnects and gets a problem it can act on
		}
	}
}

// businessStream is the state of a business stream: the business's open
// run as last known (open, if ok; fromFeed when it came with a change, the
// newest state, rather than from active_runs) and, while waiting, the open
// run that is not active (silent), followed to its end.
type businessStream struct {
	s        *Server
	st       *sseStream
	sub      *runChanges
	end      func()
	business string
	open     projections.RunRow
	ok       bool
	fromFeed bool
	silent   *projections.RunRow
}

// openBusiness follows the business's changes and reads its open run.
//
//go:noinline
func (s *Server) openBusiness(r *http.Request, c call) (*businessStream, error) {
	sub, end, err := s.followBusiness(c)
	if err != nil {
		return nil, err
	}
	// Read once changes are followed: nothing committed after it is missed.
	open, ok, err := s.fetchOpen(r.Context(), c.business)
	if err != nil {
		end()
		return nil, err
	}
	return &businessStream{s: s, sub: sub, end: end, business: c.business, open: open, ok: ok}, nil
}

// activeNow reports whether the business has an active run to follow,
// which it then holds in its newest state.
//
//go:noinline
func (b *businessStream) activeNow(ctx context.Context) bool {
	s := b.s
	if !b.ok || !b.open.Active(s.now(), s.policy.StaleAfter) {
		return false
	}
	// active_runs may be ahead of the runs model (another consumer
	// group): the newer of the two, as streamActive does.
	if !b.fromFeed {
		if cur, found, err := s.fetchRun(ctx, b.business, b.open.ID); err == nil && found && cur.Version >= b.open.Version {
			b.open = cur
		}
	}
	return true
}

// followed reads what is open once the followed run ended or went silent;
// it reports false when the read failed.
//
//go:noinline
func (b *businessStream) followed(ctx context.Context) bool {
	// active_runs may not have applied the end the runs model told: an
	// ended run is not open, whatever it says.
	followed := b.open.ID
	open, ok, err := b.s.fetchOpen(ctx, b.business)
	if err != nil {
		return false
	}
	b.open, b.ok, b.fromFeed = open, ok, false
	if ok && open.ID == followed && b.st.lastEvent == sseEnded {
		b.ok = false
	}
	return true
}

// wait sends "waiting" and returns true when the business has an active
// run (b.open), false when the client or the server leaves (st.failed, ctx,
// closing) or a read failed.
func (b *businessStream) wait(ctx context.Context) bool {
	offStackDo(b.startWaiting)
	for {
		if b.st.await(ctx, b.sub.C(), nil) == streamGone { // also once a write failed
			return false
		}
		var done, active bool
		offStackDo(func() { done, active = b.woken(ctx) })
		if done {
			return active
		}
	}
}

// startWaiting sends "waiting", with the open run that is not active when
// there is one.
//
//go:noinline
func (b *businessStream) startWaiting() {
	b.silent = nil
	if b.ok {
		silent := b.open
		b.silent = &silent
	}
	b.st.sendWaiting(b.silent)
}

// woken handles a change while waiting: done with active when the business
// has an active run (b.open; fromFeed when the row came with the change
// rather than from a read), done without when a read failed.
//
//go:noinline
func (b *businessStream) woken(ctx context.Context) (done, active bool) {
	s, st := b.s, b.st
	rows, mustRead := b.sub.Take()
	var next *projections.RunRow
	for i := range rows {
		row := rows[i]
		switch {
		case b.silent != nil && row.ID == b.silent.ID && row.Ended():
			st.send(sseEnded, row)
			b.silent = nil
		case b.silent != nil && row.ID == b.silent.ID:
			b.silent = &row
		}
		if !row.Ended() && row.Active(s.now(), s.policy.StaleAfter) && (next == nil || row.Version > next.Version) {
			next = &row
		}
	}
	if next != nil {
		b.open, b.ok, b.fromFeed = *next, true, true
		return true, true
	}
	if !mustRead {
		return false, false
	}
	open, ok, err := s.fetchOpen(ctx, b.business)
	if err != nil {
		return true, false
	}
	if b.silent != nil && (!ok || open.ID != b.silent.ID) {
		if final, found, err := s.fetchRun(ctx, b.business, b.silent.ID); err == nil && found && final.Ended() {
			st.send(sseEnded, final)
		}
		b.silent = nil
	}
	if ok && open.Active(s.now(), s.policy.StaleAfter) {
		b.open, b.ok, b.fromFeed = open, true, false
		return true, true
	}
	if ok {
		b.silent = &open
	}
	return false, false
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

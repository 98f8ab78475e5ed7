package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/projections"
)

// sseOpen is the event of …/runs/open/stream: the whole first page of open
// runs, as GET /v1/runs/open answers it, plus the server's clock.
const sseOpen = "open"

// OpenRunsSnapshot is one event of GET /v1/runs/open/stream: the first page
// of open runs, longest silence first, and the server's time, so that a page
// counts silences on the server's clock between events.
type OpenRunsSnapshot struct {
	Runs       []RunView `json:"runs"`
	NextCursor *string   `json:"next_cursor"`
	ServerTime time.Time `json:"server_time"`
}

// routesOpenStream registers the operators' pushed list of open runs, and
// the count of the reads its streams make.
func (s *Server) routesOpenStream() {
	reads := prometheus.NewCounter(prometheus.CounterOpts{Name: "runledger_open_stream_reads_total",
		Help: "Reads of the open runs made for GET /v1/runs/open/stream: one per change of active_runs, shared by the streams it woke; none while nothing changes."})
	s.cfg.Registry.MustRegister(reads)
	s.handle("GET /v1/runs/open/stream", func(w http.ResponseWriter, r *http.Request) {
		if err := s.streamOpen(w, r, reads); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// streamOpen sends the first page of open runs at once, then again each time
// the active_runs read model has applied a change that alters it, until the
// client leaves or the server shuts down. Like the run stream, it costs no
// query while nothing changes: the change feed wakes it when a projector
// batch of active_runs commits (on this replica or, through LISTEN/NOTIFY,
// another), and the streams of one scope woken by one batch share one read.
// Silence is not pushed: every event carries server_time and each run its
// last_heartbeat_at and stale_at, so a page counts silences on the server's
// clock by itself.
func (s *Server) streamOpen(w http.ResponseWriter, r *http.Request, reads prometheus.Counter) error {
	claims, token, err := s.authenticate(r)
	if err != nil {
		return err
	}
	q, err := operatorOpenRunsQuery(r, claims, 50)
	if err != nil {
		return err
	}
	if s.cfg.Feed == nil {
		return newProblem(CodeInternal, "this server has no change feed")
	}
	if err := s.awaitApplied(r, projections.ActiveRuns); err != nil {
		return err
	}
	changes := s.cfg.Feed
	// Follow the feed before the first read: a batch that commits between
	// the read and the wait closes this channel, and is read.
	feedC := changes.Changed()
	applied := changes.Offset(projections.ActiveRuns)
	rows, err := s.openPage(r.Context(), q, applied, reads)
	if err != nil {
		return err
	}
	release, err := s.streams.acquire(token)
	if err != nil {
		return err
	}
	o := &openStream{s: s, q: q, reads: reads, feedC: feedC, applied: applied}
	return s.serveSSE(w, r, release, func(ctx context.Context, st *sseStream) {
		o.st = st
		o.run(ctx, rows)
	})
}

// openStream is the state of an open-runs stream: its query, the feed's
// signal and the active_runs offset its last read saw, and the state it
// last sent.
type openStream struct {
	s       *Server
	st      *sseStream
	q       projections.OpenRunsQuery
	reads   prometheus.Counter
	feedC   <-chan struct{}
	applied eventstore.Offset
	sent    []byte
}

// run sends first's page, then a page each time active_runs changes, at
// most once per openStreamGap, until the client or the server leaves or a
// read fails; it waits on a small stack, each read and send off it (see
// follow).
func (o *openStream) run(ctx context.Context, first openRunsPage) {
	st, changes := o.st, o.s.cfg.Feed
	offStackDo(func() { o.send(first) })
	// Many runs heartbeating make many batches: read at most once per
	// openStreamGap, the last change included (a wall-clock pace, not a
	// judgement of liveness, so not the server's injected clock).
	pace := time.NewTimer(0)
	defer pace.Stop()
	paced, due := true, false // paced: the gap since the last read has passed
	for {
		switch st.await(ctx, o.feedC, pace.C) {
		case streamGone:
			return
		case feedChanged:
			o.feedC = changes.Changed()
			if o.applied.Before(changes.Offset(projections.ActiveRuns)) {
				due = true // else another consumer group moved
			}
		case timerFired:
			paced = true
		}
		if !due || !paced {
			continue
		}
		o.applied, due, paced = changes.Offset(projections.ActiveRuns), false, false
		pace.Reset(openStreamGap)
		if !offStack(func() bool { return o.readAndSend(ctx) }) {
			return // the client reconnects and gets a problem it can act on
		}
	}
}

// readAndSend reads the first page again and sends it if it changed; it
// reports false when the read failed.
func (o *openStream) readAndSend(ctx context.Context) bool {
	page, err := o.s.openPage(ctx, o.q, o.applied, o.reads)
	if err != nil {
		return false
	}
	o.send(page)
	return true
}

// send writes a page unless it shows what the last one showed.
func (o *openStream) send(p openRunsPage) {
	page := o.s.runList(p.rows, "")
	if p.next != nil {
		cur := encodeCursor(p.next.LastHeartbeatAt, p.next.BusinessID)
		page.NextCursor = &cur
	}
	key := shownState(page.Runs) // a batch that changed nothing shown sends nothing
	if bytes.Equal(key, o.sent) {
		return
	}
	o.sent = key
	o.st.sendJSON(sseOpen, OpenRunsSnapshot{Runs: page.Runs, NextCursor: page.NextCursor, ServerTime: utc(o.s.now())})
}

// openStreamGap is the shortest time between two reads of one open-runs
// stream: changes within it are sent together, well within the second an
// operator may wait.
const openStreamGap = 200 * time.Millisecond

type openRunsPage struct {
	rows []projections.RunRow
	next *projections.OpenCursor
}

// openPage reads the first page of q once active_runs has applied off; the
// streams of one scope woken by the same batch share the read.
func (s *Server) openPage(ctx context.Context, q projections.OpenRunsQuery, off eventstore.Offset, reads prometheus.Counter) (openRunsPage, error) {
	key := fmt.Sprintf("open/%s/%d/%d/%d", q.BusinessID, q.Limit, off.TxID, off.Position)
	v, err, _ := s.runReads.Do(key, func() (any, error) {
		reads.Inc()
		rows, next, err := projections.ListOpenRuns(context.WithoutCancel(ctx), s.pool, q)
		return openRunsPage{rows, next}, err
	})
	if err != nil {
		return openRunsPage{}, err
	}
	return v.(openRunsPage), nil
}

// shownState is the JSON of runs without what moves with the clock rather
// than the log (server_time, active, stalled), so that two pages compare
// equal when no run changed.
func shownState(runs []RunView) []byte {
	cp := make([]RunView, len(runs))
	for i, v := range runs {
		v.ServerTime, v.Active, v.Stalled, v.StalledSince = time.Time{}, false, false, nil
		cp[i] = v
	}
	out, _ := json.Marshal(cp)
	return out
}

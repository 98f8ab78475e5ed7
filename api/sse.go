package api

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/runledger/runledger/feed"
	"github.com/runledger/runledger/projections"
)

// runChanges is a stream's subscription to one business's runs: the rows
// this replica's projector wrote, or word that it must read.
type runChanges = feed.Subscription[projections.RunRow]

// followBusiness takes one of the token's stream slots and follows the
// business's runs on the change feed; end gives both back.
func (s *Server) followBusiness(c call) (sub *runChanges, end func(), err error) {
	release, err := s.streams.acquire(c.token)
	if err != nil {
		return nil, nil, err
	}
	sub = s.cfg.Feed.Subscribe(projections.Runs, c.business)
	return sub, func() { sub.Close(); release() }, nil
}

// sseStream writes one client's events.
type sseStream struct {
	s         *Server
	out       sseOutput
	keepAlive *time.Ticker
	lastID    int64
	failed    bool // the client is gone

	// lastEvent is the last run event sent (stream_wait.go: how a followed run left).
	lastEvent string
}

// newSSEStream starts a stream on out (its head sent), whose run events
// resume after lastID (the request's Last-Event-ID).
func (s *Server) newSSEStream(out sseOutput, lastID int64) *sseStream {
	st := &sseStream{s: s, out: out, keepAlive: time.NewTicker(s.cfg.StreamKeepAlive), lastID: lastID}
	st.write(fmt.Sprintf("retry: %d\n\n", time.Second.Milliseconds()))
	return st
}

// stop ends the stream's keep-alives.
func (st *sseStream) stop() { st.keepAlive.Stop() }

// woken is why await returned.
type woken int

const (
	streamGone  woken = iota // the client left, the server is shutting down, or a write failed
	feedChanged              // the change feed signalled
	timerFired               // the stream's own timer fired
)

// await is every stream's wait: until the change feed signals (feedC) or
// the stream's timer fires (timer; nil for none), writing keep-alives
// meanwhile. It reports streamGone when the client leaves, when the server shuts
// down (the client reconnects, with Last-Event-ID, to another replica) or
// when the client cannot be written to.
func (st *sseStream) await(ctx context.Context, feedC <-chan struct{}, timer <-chan time.Time) woken {
	for !st.failed {
		select {
		case <-ctx.Done():
			return streamGone
		case <-st.s.closing:
			return streamGone
		case <-st.keepAlive.C:
			st.write(": keepalive\n\n")
		case <-feedC:
			return feedChanged
		case <-timer:
			return timerFired
		}
	}
	return streamGone
}

func (st *sseStream) write(s string) {
	if st.failed {
		return
	}
	if st.out.send(s) != nil {
		st.failed = true
	}
}

// send writes a run event, its id the run's log position.
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

// sendJSON writes an event without an id (ids are the log positions of runs).
func (st *sseStream) sendJSON(event string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		st.failed = true
		return
	}
	st.write(fmt.Sprintf("event: %s\ndata: %s\n\n", event, data))
}

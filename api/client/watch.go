package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// SSE event types of the active-run stream.
const (
	// EventRun is the run's state: first its current state, then each change.
	EventRun = "run"
	// EventEnded is the run's terminal state; the stream ends after it.
	EventEnded = "ended"
	// EventInactive says the run went silent past its TTL; the stream ends after it.
	EventInactive = "inactive"
)

// streamIdleTimeout is three of the server's keep-alive intervals.
const streamIdleTimeout = 45 * time.Second

var errStreamIdle = errors.New("runledger: no data on the stream for 45s")

// Event is one Server-Sent Event of a business's active-run stream.
type Event struct {
	// ID is the event's id (a log position); pass it as lastEventID to
	// resume after it. Empty for a terminal state Watch read with GetRun.
	ID string
	// Type is EventRun, EventEnded or EventInactive.
	Type string
	Run  Run
}

// Watch follows the business's active run (GET …/runs/active/stream, user
// token) and calls fn with each event, from lastEventID on ("" for the
// current state first). It returns nil after the terminal event (EventEnded
// or EventInactive) was handled; fn's error if fn returns one;
// context.Cause(ctx) when ctx ends; *Error with Code no_active_run if the
// business has no active run when Watch starts. A dropped stream is
// reconnected with Last-Event-ID after a backoff (MaxAttempts failures in a
// row give up with the last error); if the run is no longer active on
// reconnection, Watch reads it and hands fn its final state (EventEnded, or
// EventInactive if it is silent but not yet ended), then returns nil.
func (c *Client) Watch(ctx context.Context, business, lastEventID string, fn func(Event) error) error {
	var runID string
	failures := 0
	for {
		progressed, terminal, err := c.stream(ctx, business, &lastEventID, &runID, fn)
		var fnErr fnError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case terminal:
			return err
		case ctx.Err() != nil:
			return context.Cause(ctx)
		}
		var apiErr *Error
		if errors.As(err, &apiErr) {
			switch {
			case apiErr.Code == CodeNoActiveRun && runID != "":
				delivered, err := c.finalEvent(ctx, business, runID, fn)
				if delivered || err != nil {
					return err
				}
				// The run reads as live still: the read models disagree for
				// a moment. Ask the stream again.
			case !apiErr.transient():
				return err
			}
		}
		if progressed {
			failures = 0
		}
		failures++
		if failures >= c.opts.MaxAttempts {
			return fmt.Errorf("watch %s: gave up after %d failed connections: %w", business, failures, err)
		}
		wait := c.backoff(failures)
		c.logger.Warn("runledger: stream dropped; reconnecting", "business", business, "last_event_id", lastEventID, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// fnError carries the error of Watch's callback through stream.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// finalEvent hands fn the state of a run that stopped being active while
// the stream was down, unless the run still reads as running and active
// (the run read model may lag behind the active one): delivered is then false.
func (c *Client) finalEvent(ctx context.Context, business, runID string, fn func(Event) error) (delivered bool, err error) {
	run, err := c.GetRun(ctx, business, runID)
	if err != nil {
		return false, err
	}
	typ := EventInactive
	switch {
	case run.Ended():
		typ = EventEnded
	case run.Active:
		return false, nil
	}
	return true, fn(Event{Type: typ, Run: run})
}

// stream reads one connection: progressed if it delivered an event,
// terminal if the stream reached its end (or fn failed). The error says why
// a non-terminal stream stopped.
func (c *Client) stream(ctx context.Context, business string, lastID, runID *string, fn func(Event) error) (progressed, terminal bool, err error) {
	path := businessPath(business) + "/runs/active/stream"
	// A connection that died without closing would block the read forever:
	// the server sends a keep-alive comment every 15 s, so a silence of
	// streamIdleTimeout drops the connection (and Watch reconnects).
	ctx, drop := context.WithCancelCause(ctx)
	defer drop(nil)
	idle := time.AfterFunc(streamIdleTimeout, func() { drop(errStreamIdle) })
	defer idle.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return false, true, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	c.setMinPosition(req.Header)
	res, err := c.http.Do(req)
	if err != nil {
		return false, false, fmt.Errorf("runledger: GET %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		return false, false, problemError(http.MethodGet, path, res, raw)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id, typ string
	var data strings.Builder
	for sc.Scan() {
		idle.Reset(streamIdleTimeout)
		line := sc.Text()
		if line == "" { // dispatch
			if typ == "" && data.Len() == 0 {
				continue
			}
			ev := Event{ID: id, Type: typ}
			if ev.Type == "" {
				ev.Type = "message"
			}
			if err := json.Unmarshal([]byte(data.String()), &ev.Run); err != nil {
				return progressed, false, fmt.Errorf("runledger: GET %s: event %q: %w", path, id, err)
			}
			data.Reset()
			typ = ""
			if id != "" {
				*lastID = id
			}
			*runID = ev.Run.RunID
			progressed = true
			if err := fn(ev); err != nil {
				return progressed, true, fnError{err}
			}
			if ev.Type == EventEnded || ev.Type == EventInactive {
				return progressed, true, nil
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		}
	}
	if err := sc.Err(); err != nil {
		return progressed, false, fmt.Errorf("runledger: GET %s: %w", path, err)
	}
	return progressed, false, fmt.Errorf("runledger: GET %s: stream closed before the run's end", path)
}

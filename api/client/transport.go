package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// maxRetryAfter caps how long a Retry-After answer is waited for.
const maxRetryAfter = 30 * time.Second

// request is one API call.
type request struct {
	method, path string
	// body is sent as JSON when not nil; it is marshalled once, so every
	// attempt sends the same bytes (an Idempotency-Key requires it).
	body any
	// key is the Idempotency-Key: one per logical command, reused by its retries.
	key string
	// once sends a single attempt (the heartbeat loop is its own retry).
	once bool
	// finish lets an attempt in flight finish when ctx ends (no new attempt
	// starts): a start whose answer is awaited is not abandoned half-done.
	finish bool
	// read sends the session's position (Runledger-Min-Position), so the
	// answer reflects every command this client was answered.
	read bool
}

// answer is a 2xx answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends r, retrying network errors and 5xx answers with exponential
// backoff and jitter (honouring Retry-After) up to MaxAttempts, and decodes
// a 2xx body into out (if not nil). It returns *Error for a non-2xx answer,
// or the last network error, wrapped with the request.
func (c *Client) do(ctx context.Context, r request, out any) (answer, error) {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return answer{}, fmt.Errorf("runledger: %s %s: encode body: %w", r.method, r.path, err)
		}
	}
	attempts := c.opts.MaxAttempts
	if r.once {
		attempts = 1
	}
	attemptCtx := ctx
	if r.finish {
		attemptCtx = context.WithoutCancel(ctx)
	}
	for attempt := 1; ; attempt++ {
		if attempt > 1 && ctx.Err() != nil {
			return answer{}, fmt.Errorf("runledger: %s %s: %w", r.method, r.path, context.Cause(ctx))
		}
		a, err := c.attempt(attemptCtx, r, payload)
		if err == nil {
			if out != nil && len(a.body) > 0 {
				if err := json.Unmarshal(a.body, out); err != nil {
					return a, fmt.Errorf("runledger: %s %s: decode answer: %w", r.method, r.path, err)
				}
			}
			return a, nil
		}
		var apiErr *Error
		isAPI := errors.As(err, &apiErr)
		if ctx.Err() != nil || (isAPI && !apiErr.transient()) || attempt >= attempts {
			return a, err
		}
		wait := c.backoff(attempt)
		if isAPI && apiErr.RetryAfter > 0 {
			wait = max(wait, min(apiErr.RetryAfter, maxRetryAfter))
		}
		c.logger.Warn("runledger: retrying", "method", r.method, "path", r.path, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return a, err
		case <-t.C:
		}
	}
}

// backoff is MinBackoff·2^(attempt-1), capped at MaxBackoff, the upper half random.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.opts.MaxBackoff
	if shift := attempt - 1; shift < 30 {
		d = min(d, c.opts.MinBackoff<<shift)
	}
	half := d / 2
	return half + rand.N(half+1)
}

// attempt sends r once, bounded by RequestTimeout.
func (c *Client) attempt(ctx context.Context, r request, payload []byte) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, body)
	if err != nil {
		return answer{}, fmt.Errorf("runledger: %s %s: %w", r.method, r.path, err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	if r.read {
		c.setMinPosition(req.Header)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("runledger: %s %s: %w", r.method, r.path, err)
	}
	defer res.Body.Close()
	c.notePosition(res.Header)
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return answer{}, fmt.Errorf("runledger: %s %s: read answer: %w", r.method, r.path, err)
	}
	a := answer{status: res.StatusCode, header: res.Header, body: raw}
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return a, nil
	}
	return a, problemError(r.method, r.path, res, raw)
}

// problemError builds the *Error of a non-2xx answer.
func problemError(method, path string, res *http.Response, raw []byte) *Error {
	e := &Error{Status: res.StatusCode, Method: method, Path: path, RetryAfter: retryAfter(res.Header.Get("Retry-After"))}
	var p problemJSON
	if json.Unmarshal(raw, &p) == nil {
		e.Code, e.Detail, e.Fields, e.RunID, e.Run = p.Code, p.Detail, p.Errors, p.RunID, p.Run
	}
	if e.Detail == "" && e.Code == "" {
		e.Detail = http.StatusText(res.StatusCode)
	}
	return e
}

// retryAfter reads a Retry-After header in seconds or as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// Headers of read-your-writes: a command's answer carries the log position
// it produced; a read given a minimum position waits until its read model
// has applied it.
const (
	positionHeader    = "Runledger-Position"
	minPositionHeader = "Runledger-Min-Position"
)

// setMinPosition asks a read to reflect the session's position, unless
// EventualReads is set or the client has not been answered a position yet.
func (c *Client) setMinPosition(h http.Header) {
	if pos := c.seen.Load(); pos > 0 && !c.opts.EventualReads {
		h.Set(minPositionHeader, strconv.FormatInt(pos, 10))
	}
}

// notePosition remembers the position an answer carries.
func (c *Client) notePosition(h http.Header) {
	if pos, err := strconv.ParseInt(h.Get(positionHeader), 10, 64); err == nil && pos > 0 {
		c.ObservePosition(pos)
	}
}

// Package client is the Go client of runledger's HTTP API.
//
// Workers use Run, which makes a run impossible to leave stuck: it starts
// the run, heartbeats it from its own goroutine, completes it when the work
// returns (or panics), turns a user's cancel into the cancellation of the
// work's context, and stops the work at once when the run can no longer be
// its own (fencing). Pages and tools written in Go use the reads: GetActive,
// GetRun and Watch.
//
// The package speaks the HTTP contract only: it imports none of the
// server's packages, and its types are its own view of the JSON.
package client

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Causes of the cancellation of a work function's context; test them with
// errors.Is(context.Cause(ctx), …).
var (
	// ErrCancelRequested: a user asked the run to stop (a graceful cancel,
	// delivered in a heartbeat's answer). The run is completed as cancelled
	// once work returns.
	ErrCancelRequested = errors.New("runledger: cancel requested")
	// ErrRunEnded: a heartbeat was answered 409 run_ended; the run was ended
	// by someone else (the reaper, a forced cancel, another worker) and is no
	// longer this worker's. Run does not complete it.
	ErrRunEnded = errors.New("runledger: run ended")
	// ErrLivenessLost: no heartbeat was acknowledged for the run's TTL minus a
	// margin (the server is unreachable), so the run is about to be reaped.
	// Run does not complete it; the reaper ends it as failed (stale).
	ErrLivenessLost = errors.New("runledger: liveness lost")
)

// Problem codes of the contract that callers commonly test (Error.Code).
const (
	CodeActiveRunExists      = "active_run_exists"
	CodeNoActiveRun          = "no_active_run"
	CodeRunEnded             = "run_ended"
	CodeNotFound             = "not_found"
	CodeValidationFailed     = "validation_failed"
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	CodeReadModelBehind      = "read_model_behind"
)

// Error is a non-2xx answer of the server: its RFC 9457 problem when it sent
// one. errors.Is(err, ErrRunEnded) is true for a 409 run_ended.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the problem's stable code (empty if the answer was not a problem).
	Code   string
	Detail string
	// Fields name the invalid fields of a validation_failed problem.
	Fields []FieldError
	// RunID names the active run that blocks a start (active_run_exists).
	RunID string
	// Run is the final state of an ended run (run_ended).
	Run *Run
	// RetryAfter is the answer's Retry-After, if any.
	RetryAfter time.Duration
	// Method and Path are the request's.
	Method, Path string
}

// FieldError is one invalid field of a validation problem.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("runledger: %s %s: %d", e.Method, e.Path, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Is makes errors.Is(err, ErrRunEnded) true for a run_ended answer.
func (e *Error) Is(target error) bool {
	return target == ErrRunEnded && e.Code == CodeRunEnded
}

// transient reports whether the answer may succeed if sent again.
func (e *Error) transient() bool { return e.Status >= 500 }

// Options configure a Client. Only BaseURL is required.
type Options struct {
	// BaseURL is the server, e.g. "http://127.0.0.1:8080".
	BaseURL string
	// Token is the bearer token sent with every request: a worker token for
	// Run, a user (or operator) token for reads and cancel.
	Token string
	// HTTPClient sends the requests (default: a client with its own
	// transport and no overall timeout; every attempt is bounded by
	// RequestTimeout instead, and Watch's streams by nothing but ctx).
	HTTPClient *http.Client
	// Logger receives one line per event worth knowing (default: none).
	Logger *slog.Logger
	// WorkerID names this worker in the runs it starts (default host-pid).
	WorkerID string
	// RequestTimeout bounds one attempt of one request (default 10s).
	RequestTimeout time.Duration
	// MaxAttempts bounds the attempts of one request, the first included
	// (default 6). Network errors and 5xx answers are retried; 4xx are not.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait before a retry: MinBackoff
	// doubled at each attempt, capped at MaxBackoff, half of it random
	// (defaults 100ms and 5s). A Retry-After answer is waited for (at most 30s).
	MinBackoff, MaxBackoff time.Duration
	// HeartbeatInterval overrides the heartbeat interval that Run derives
	// from the server's policy; it is capped at a tenth of the run's TTL.
	HeartbeatInterval time.Duration
	// EventualReads turns session consistency off: reads then answer from
	// the read models as they are, which may not have applied this client's
	// own commands yet (see Client).
	EventualReads bool
}

// Client talks to one runledger server. It is safe for concurrent use.
//
// It reads its own writes (session consistency): it remembers the highest
// log position the server has answered it (Runledger-Position) and sends
// it with every read (Runledger-Min-Position), so a read made after one of
// its commands reflects that command, never an older state; the server
// waits for its read model (at most its --consistency-wait, then a 503
// read_model_behind that is retried). Options.EventualReads turns this off.
type Client struct {
	base   string
	opts   Options
	http   *http.Client
	logger *slog.Logger
	// seen is the highest log position answered to this client.
	seen atomic.Int64
}

// Position returns the highest log position the server has answered this
// client (0 before its first command): what its reads wait for.
func (c *Client) Position() int64 { return c.seen.Load() }

// ObservePosition raises the position this client's reads wait for to pos
// (a lower pos changes nothing): how a position learned elsewhere, e.g.
// from another client's command, joins this client's session.
func (c *Client) ObservePosition(pos int64) {
	for {
		cur := c.seen.Load()
		if pos <= cur || c.seen.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// New returns a Client, or an error if BaseURL is missing or not http(s).
func New(opts Options) (*Client, error) {
	if !strings.HasPrefix(opts.BaseURL, "http://") && !strings.HasPrefix(opts.BaseURL, "https://") {
		return nil, fmt.Errorf("runledger client: BaseURL %q must be an http(s) URL", opts.BaseURL)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.WorkerID == "" {
		host, _ := os.Hostname()
		opts.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 6
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	return &Client{base: strings.TrimRight(opts.BaseURL, "/"), opts: opts, http: opts.HTTPClient, logger: opts.Logger}, nil
}

// CloseIdleConnections closes the idle connections of the client's transport.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

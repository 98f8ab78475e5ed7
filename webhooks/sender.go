package webhooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sender options' defaults.
const (
	// AttemptTimeout bounds one attempt (connection, request and answer).
	AttemptTimeout     = 15 * time.Second
	defaultConcurrency = 32
	responseKept       = 1024
	userAgent          = "runledger-webhooks/1"
)

// Sender sends due deliveries. Any number of senders (replicas) may run: a
// delivery is claimed by one short statement (FOR UPDATE SKIP LOCKED) that
// moves its due time to the end of a lease as long as the attempt's
// timeout, so no other sender takes it while the attempt can still be in
// flight, and a sender that dies or freezes holds it no longer than that.
// No transaction is open while a request is on the wire.
type Sender struct {
	Pool   *pgxpool.Pool
	Policy Policy
	// Now is the server clock; due times and leases are on it (default time.Now).
	Now func() time.Time
	// Timeout bounds each attempt and is the claim's lease (default 15 s).
	Timeout time.Duration
	// Concurrency is how many deliveries are sent at once (default 16).
	Concurrency int
	// PollInterval is the longest the sender waits before looking for due
	// deliveries again (default 1 s); Wake looks at once.
	PollInterval time.Duration
	// Jitter returns a number in [0, 1) (default math/rand).
	Jitter  func() float64
	Metrics *Metrics
	Logger  *slog.Logger

	once   sync.Once
	client *http.Client
	wake   chan struct{}
}

func (s *Sender) init() {
	s.once.Do(func() {
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Timeout <= 0 {
			s.Timeout = AttemptTimeout
		}
		if s.Concurrency <= 0 {
			s.Concurrency = defaultConcurrency
		}
		if s.PollInterval <= 0 {
			s.PollInterval = time.Second
		}
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		s.wake = make(chan struct{}, 1)
		dialer := &net.Dialer{Timeout: s.Timeout, KeepAlive: 30 * time.Second}
		s.client = &http.Client{
			Transport: &http.Transport{Proxy: nil, DialContext: s.Policy.dialContext(dialer),
				MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: s.Timeout,
				ResponseHeaderTimeout: s.Timeout},
			// A redirect is the receiver's answer (a failure), never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
}

// Wake makes a running sender look for due deliveries now.
func (s *Sender) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run sends due deliveries until ctx ends; it returns nil then, after the
// attempts in flight have ended. Attempts are pipelined: as soon as one
// ends, another due delivery may be claimed, up to Concurrency at once. A
// database failure is logged and retried at the next poll.
func (s *Sender) Run(ctx context.Context) error {
	s.init()
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, s.Concurrency)
		freed = make(chan struct{}, 1)
	)
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastGauge := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-freed:
		case <-timer.C:
		}
		free := s.Concurrency - len(slots)
		more := false
		if free > 0 {
			start := time.Now()
			claims, err := s.claim(ctx, free)
			if err != nil && ctx.Err() == nil {
				s.Logger.Warn("webhooks: claiming deliveries failed; retrying", "err", err)
			}
			for _, c := range claims {
				slots <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.attempt(ctx, start, c)
					<-slots
					select {
					case freed <- struct{}{}:
					default:
					}
				}()
			}
			more = len(claims) == free // there may be more due right now
		}
		if s.Metrics != nil && time.Since(lastGauge) >= time.Second {
			lastGauge = time.Now()
			if err := s.Metrics.measurePending(ctx, s.Pool, s.Now()); err != nil && ctx.Err() == nil {
				s.Logger.Warn("webhooks: measuring pending deliveries failed", "err", err)
			}
		}
		wait := s.PollInterval
		if more {
			wait = 0
		}
		timer.Reset(wait)
	}
}

// claim is a delivery taken for one attempt.
type claim struct {
	id, endpointID, token uuid.UUID
	attempt               int
	payload               []byte
	url                   string
	secrets               []string
}

// SendDue claims up to Concurrency due deliveries, sends them at once and
// records each outcome; it returns how many it claimed.
func (s *Sender) SendDue(ctx context.Context) (int, error) {
	s.init()
	start := time.Now()
	claims, err := s.claim(ctx, s.Concurrency)
	if err != nil || len(claims) == 0 {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, c := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.attempt(ctx, start, c)
		}()
	}
	wg.Wait()
	return len(claims), nil
}

// attempt sends c and records the outcome. The attempt ends within the
// claim's lease, measured from before the claim (start).
func (s *Sender) attempt(ctx context.Context, start time.Time, c claim) {
	attemptCtx, cancel := context.WithDeadline(ctx, start.Add(s.Timeout))
	defer cancel()
	res := s.send(attemptCtx, c)
	if err := s.record(context.WithoutCancel(ctx), c, res); err != nil {
		s.Logger.Warn("webhooks: recording an attempt failed; the delivery is due again after its lease",
			"delivery", c.id, "err", err)
	}
}

func (s *Sender) claim(ctx context.Context, limit int) ([]claim, error) {
	now := s.Now()
	token := uuid.New()
	rows, err := s.Pool.Query(ctx, `WITH due AS (
			SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
			WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND NOT e.disabled
			ORDER BY d.next_attempt_at LIMIT $2
			FOR UPDATE OF d SKIP LOCKED)
		UPDATE webhook_deliveries d SET next_attempt_at = $3, lease_token = $4, attempts = d.attempts + 1, updated_at = $1
		FROM due, webhook_endpoints e
		WHERE d.id = due.id AND e.id = d.endpoint_id
		RETURNING d.id, d.endpoint_id, d.attempts, d.payload, e.url, e.secret, coalesce(e.previous_secret, ''),
			coalesce(e.previous_secret_until, 'epoch')`, now, limit, now.Add(s.Timeout), token)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (claim, error) {
		c := claim{token: token}
		var (
			payload string
			ep      Endpoint
		)
		err := r.Scan(&c.id, &c.endpointID, &c.attempt, &payload, &c.url, &ep.Secret, &ep.PreviousSecret, &ep.PreviousUntil)
		c.payload, c.secrets = []byte(payload), ep.Secrets(now)
		return c, err
	})
}

// result is what one attempt came to.
type result struct {
	at         time.Time
	status     int
	duration   time.Duration
	response   string
	err        string
	retryAfter time.Duration // from a 429 or 503, if given
	refused    bool          // the policy refused the target
}

func (r result) ok() bool { return r.err == "" && r.status >= 200 && r.status < 300 }

func (s *Sender) send(ctx context.Context, c claim) result {
	now := s.Now()
	res := result{at: now}
	id := MessageID(c.id)
	sig, err := Sign(c.secrets, id, now, c.payload)
	if err != nil {
		res.err = err.Error()
		return res
	}
	if _, err := s.Policy.CheckURL(ctx, c.url); err != nil {
		res.err, res.refused = "refused: "+err.Error(), true
		return res
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, strings.NewReader(string(c.payload)))
	if err != nil {
		res.err = err.Error()
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	began := time.Now()
	resp, err := s.client.Do(req)
	res.duration = time.Since(began)
	if err != nil {
		res.err = attemptError(err)
		if errors.Is(err, ErrForbiddenTarget) {
			res.refused = true
		}
		return res
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, responseKept))
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10) // lets the connection be reused
	res.status, res.response = resp.StatusCode, strings.ToValidUTF8(string(body), "\uFFFD")
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.retryAfter, _ = retryAfter(resp.Header, now)
	}
	return res
}

// attemptError says why an attempt got no answer, without the URL's query
// (which may carry a receiver's token).
func attemptError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}

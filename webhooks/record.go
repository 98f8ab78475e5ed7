package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Outcomes of an attempt, as counted by the metrics.
const (
	OutcomeSucceeded = "succeeded" // 2xx
	OutcomeRetrying  = "retrying"  // failed; another attempt is scheduled
	OutcomeFailed    = "failed"    // failed, and no attempt is left
	OutcomeGone      = "gone"      // 410: the endpoint is disabled
	OutcomeRefused   = "refused"   // the target is an address the policy refuses
	OutcomeLost      = "lost"      // the claim's lease ended before the outcome was recorded
)

// record stores an attempt's outcome in one statement (one round trip), if
// the claim is still the delivery's: the delivery's status and next
// attempt, the attempt's log line, and the endpoint's health (410 disables
// it; failing everything for DisableAfter disables it too). The commit does
// not wait for the WAL flush: an outcome lost in a crash only means the
// delivery is sent again after its lease (at least once, same webhook-id).
func (s *Sender) record(ctx context.Context, c claim, res result) error {
	outcome, next := s.judge(c, res)
	status, due, health := StatusPending, &next, "fail"
	switch outcome {
	case OutcomeSucceeded:
		status, due, health = StatusSucceeded, nil, "ok"
	case OutcomeGone:
		status, due, health = StatusFailed, nil, "gone"
	case OutcomeFailed:
		status, due = StatusFailed, nil
	}
	var code *int
	if res.status != 0 {
		code = &res.status
	}
	var recorded int
	err := s.Pool.QueryRow(ctx, recordSQL, c.id, c.token, status, due, res.at, c.attempt, code, res.duration.Milliseconds(),
		res.response, res.err, health, fmt.Sprintf("%d seconds", int64(DisableAfter.Seconds()))).Scan(&recorded)
	if err != nil {
		return fmt.Errorf("record attempt %d of %s: %w", c.attempt, c.id, err)
	}
	if recorded == 0 {
		outcome = OutcomeLost
	}
	if s.Metrics != nil {
		s.Metrics.Deliveries.WithLabelValues(outcome).Inc()
	}
	if outcome != OutcomeSucceeded {
		s.Logger.Info("webhook attempt failed", "delivery", c.id, "endpoint", c.endpointID, "attempt", c.attempt,
			"status", res.status, "error", res.err, "outcome", outcome)
	}
	return nil
}

// recordSQL is record's statement: every part keys on d, the delivery row
// the claim still holds (none if its lease was taken over).
const recordSQL = `WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true) AS v),
	d AS (UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, lease_token = NULL, updated_at = $5
		WHERE id = $1 AND lease_token = $2 RETURNING id, endpoint_id),
	a AS (INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code, duration_ms, response, error,
			next_attempt_at)
		SELECT id, $6, $5, $7, $8, $9, $10, $4 FROM d ON CONFLICT DO NOTHING),
	ok AS (UPDATE webhook_endpoints SET failing_since = NULL
		WHERE $11::text = 'ok' AND id IN (SELECT endpoint_id FROM d) AND failing_since IS NOT NULL),
	gone AS (UPDATE webhook_endpoints SET disabled = true, disabled_at = $5, updated_at = $5,
			disabled_reason = 'the endpoint answered 410 Gone'
		WHERE $11::text = 'gone' AND id IN (SELECT endpoint_id FROM d) AND NOT disabled),
	fail AS (UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $5),
			disabled = disabled OR coalesce(failing_since, $5) <= $5 - $12::interval,
			disabled_at = CASE WHEN NOT disabled AND coalesce(failing_since, $5) <= $5 - $12::interval THEN $5 ELSE disabled_at END,
			disabled_reason = CASE WHEN NOT disabled AND coalesce(failing_since, $5) <= $5 - $12::interval
				THEN 'every attempt failed for 5 days' ELSE disabled_reason END,
			updated_at = $5
		WHERE $11::text = 'fail' AND id IN (SELECT endpoint_id FROM d))
	SELECT (SELECT count(*) FROM d)::int + 0 * (SELECT count(*) FROM cfg)::int`

// judge decides an attempt's outcome and, if another attempt follows, when.
func (s *Sender) judge(c claim, res result) (string, time.Time) {
	switch {
	case res.ok():
		return OutcomeSucceeded, time.Time{}
	case res.status == http.StatusGone:
		return OutcomeGone, time.Time{}
	}
	wait, more := nextWait(c.attempt, s.Jitter)
	if !more {
		return OutcomeFailed, time.Time{}
	}
	if res.retryAfter > wait {
		wait = res.retryAfter
	}
	if res.refused {
		return OutcomeRefused, res.at.Add(wait)
	}
	return OutcomeRetrying, res.at.Add(wait)
}

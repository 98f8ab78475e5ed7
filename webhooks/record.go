package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
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

// record stores an attempt's outcome in one short transaction, if the claim
// is still the delivery's: the delivery's status and next attempt, the
// attempt's log line, and the endpoint's health (410 disables it; failing
// everything for DisableAfter disables it too).
func (s *Sender) record(ctx context.Context, c claim, res result) error {
	outcome, next := s.judge(c, res)
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		// An outcome lost in a crash only means the delivery is sent again
		// after its lease (at least once, same webhook-id): no need to wait
		// for the WAL flush.
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		status, due := StatusPending, &next
		switch outcome {
		case OutcomeSucceeded:
			status, due = StatusSucceeded, nil
		case OutcomeFailed, OutcomeGone:
			status, due = StatusFailed, nil
		}
		tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, lease_token = NULL,
			updated_at = $5 WHERE id = $1 AND lease_token = $2`, c.id, c.token, status, due, res.at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			outcome = OutcomeLost
			return nil
		}
		var code *int
		if res.status != 0 {
			code = &res.status
		}
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code,
				duration_ms, response, error, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT DO NOTHING`, c.id, c.attempt, res.at, code, res.duration.Milliseconds(), res.response, res.err, due); err != nil {
			return err
		}
		return s.endpointHealth(ctx, tx, c, res, outcome)
	})
	if err != nil {
		return fmt.Errorf("record attempt %d of %s: %w", c.attempt, c.id, err)
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

func (s *Sender) endpointHealth(ctx context.Context, tx pgx.Tx, c claim, res result, outcome string) error {
	var err error
	switch outcome {
	case OutcomeSucceeded:
		_, err = tx.Exec(ctx, `UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`, c.endpointID)
	case OutcomeGone:
		_, err = tx.Exec(ctx, `UPDATE webhook_endpoints SET disabled = true, disabled_at = $2, updated_at = $2,
			disabled_reason = 'the endpoint answered 410 Gone' WHERE id = $1 AND NOT disabled`, c.endpointID, res.at)
	default:
		_, err = tx.Exec(ctx, `UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2),
			disabled = disabled OR coalesce(failing_since, $2) <= $2 - $3::interval,
			disabled_at = CASE WHEN NOT disabled AND coalesce(failing_since, $2) <= $2 - $3::interval THEN $2 ELSE disabled_at END,
			disabled_reason = CASE WHEN NOT disabled AND coalesce(failing_since, $2) <= $2 - $3::interval
				THEN 'every attempt failed for 5 days' ELSE disabled_reason END,
			updated_at = $2
			WHERE id = $1`, c.endpointID, res.at, fmt.Sprintf("%d seconds", int64(DisableAfter.Seconds())))
	}
	return err
}

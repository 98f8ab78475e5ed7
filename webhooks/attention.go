package webhooks

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The operators' read of the endpoints that need attention (issue 26, item
// 4): every failing or disabled endpoint, across businesses, with what an
// operator needs to judge it and nothing that signs (no secret, no URL path
// or query, where receivers put tokens).

// Querier runs one query; *pgxpool.Pool (the reads pool, for the API) is one.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// MaxAttentionLimit bounds one read of the endpoints needing attention.
const MaxAttentionLimit = 100

// AttentionQuery selects the endpoints needing attention.
type AttentionQuery struct {
	// BusinessID scopes the read to one business ("": every business).
	BusinessID string
	// Limit is how many endpoints are returned, 1 to MaxAttentionLimit.
	Limit int
}

// LastAttempt is an endpoint's newest attempt.
type LastAttempt struct {
	At time.Time
	// StatusCode is 0 when no answer came (Error says why).
	StatusCode int
	Error      string
}

// EndpointAttention is an endpoint that is failing (its attempts have
// failed since its last success) or disabled.
type EndpointAttention struct {
	BusinessID string
	ID         uuid.UUID
	// Origin is the URL's scheme and host ("https://hooks.example.com"),
	// without its path, query or credentials.
	Origin      string
	Description string
	// FailingSince is the first failed attempt since the last success (zero: none).
	FailingSince   time.Time
	Disabled       bool
	DisabledReason string
	DisabledAt     time.Time
	// LastAttempt is nil when the endpoint has had no attempt yet.
	LastAttempt *LastAttempt
	// PendingDeliveries counts the deliveries still to be sent; the
	// oldest of them was created at OldestPendingAt (zero: none).
	PendingDeliveries int
	OldestPendingAt   time.Time
}

// TroubleSince is when the endpoint's trouble began: the first failure of
// the current run of failures, or the disabling if no failure came first.
func (a EndpointAttention) TroubleSince() time.Time {
	if !a.FailingSince.IsZero() && (a.DisabledAt.IsZero() || a.FailingSince.Before(a.DisabledAt)) {
		return a.FailingSince
	}
	return a.DisabledAt
}

// ListNeedingAttention returns the failing or disabled endpoints, longest
// trouble first (up to q.Limit), and whether more are left out. It sends
// one statement on db, so the API reads it on its reads pool.
func ListNeedingAttention(ctx context.Context, db Querier, q AttentionQuery) ([]EndpointAttention, bool, error) {
	if q.Limit < 1 || q.Limit > MaxAttentionLimit {
		return nil, false, fmt.Errorf("list endpoints needing attention: limit %d is not 1 to %d", q.Limit, MaxAttentionLimit)
	}
	rows, err := db.Query(ctx, attentionSQL, q.BusinessID, q.Limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("list endpoints needing attention: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanAttention)
	if err != nil {
		return nil, false, fmt.Errorf("list endpoints needing attention: %w", err)
	}
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	return out, more, nil
}

// attentionSQL: the endpoints table is configuration (a few rows per
// business), scanned whole; each listed endpoint's last attempt and pending
// deliveries come through its deliveries' index.
const attentionSQL = `SELECT e.business_id, e.id, e.url, e.description, e.failing_since, e.disabled,
		coalesce(e.disabled_reason, ''), e.disabled_at, last.attempted_at, last.status_code, last.error,
		pending.n, pending.oldest
	FROM webhook_endpoints e
	LEFT JOIN LATERAL (SELECT a.attempted_at, a.status_code, a.error
		FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id
		WHERE d.endpoint_id = e.id
		ORDER BY a.attempted_at DESC, a.attempt DESC LIMIT 1) last ON true
	CROSS JOIN LATERAL (SELECT count(*)::int AS n, min(d.created_at) AS oldest
		FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending') pending
	WHERE (e.failing_since IS NOT NULL OR e.disabled) AND ($1::text = '' OR e.business_id = $1)
	ORDER BY least(e.failing_since, e.disabled_at), e.business_id, e.id
	LIMIT $2`

func scanAttention(row pgx.CollectableRow) (EndpointAttention, error) {
	var (
		a                                   EndpointAttention
		rawURL                              string
		failing, disabledAt, lastAt, oldest *time.Time
		code                                *int
		lastErr                             *string
	)
	if err := row.Scan(&a.BusinessID, &a.ID, &rawURL, &a.Description, &failing, &a.Disabled, &a.DisabledReason,
		&disabledAt, &lastAt, &code, &lastErr, &a.PendingDeliveries, &oldest); err != nil {
		return a, err
	}
	a.Origin = Origin(rawURL)
	a.FailingSince, a.DisabledAt, a.OldestPendingAt = deref(failing), deref(disabledAt), deref(oldest)
	if lastAt != nil {
		a.LastAttempt = &LastAttempt{At: lastAt.UTC()}
		if code != nil {
			a.LastAttempt.StatusCode = *code
		}
		if lastErr != nil {
			a.LastAttempt.Error = *lastErr
		}
	}
	return a, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// Origin returns raw's scheme and host ("https://hooks.example.com:8443"):
// never its credentials, path, query or fragment, where a receiver's token
// may be. It returns "" for a URL it cannot parse.
func Origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

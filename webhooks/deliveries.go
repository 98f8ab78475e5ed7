package webhooks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

// Delivery is one event for one endpoint, with its attempts.
type Delivery struct {
	ID         uuid.UUID
	EndpointID uuid.UUID
	EventID    uuid.UUID
	Position   int64
	EventType  string
	Status     string
	Attempts   int
	// NextAttemptAt is when a pending delivery is next due (zero otherwise).
	NextAttemptAt time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Log           []Attempt
}

// Attempt is one try at sending a delivery.
type Attempt struct {
	Number     int
	At         time.Time
	StatusCode int // 0: no answer (refused, timed out, unreachable)
	Duration   time.Duration
	// Response is the first 1 KiB of the answer's body.
	Response string
	Error    string
	// NextAttemptAt is when the delivery was rescheduled by this attempt (zero: not).
	NextAttemptAt time.Time
}

// maxListedDeliveries bounds a deliveries listing.
const maxListedDeliveries = 100

// Deliveries returns an endpoint's newest deliveries (at most limit, up to
// 100), each with its attempts; ErrNotFound if the business has no such endpoint.
func (s *Endpoints) Deliveries(ctx context.Context, business string, endpoint uuid.UUID, limit int) ([]Delivery, error) {
	if _, err := s.Get(ctx, business, endpoint); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > maxListedDeliveries {
		limit = maxListedDeliveries
	}
	rows, err := s.Pool.Query(ctx, `SELECT id, endpoint_id, event_id, position, event_type, status, attempts,
			coalesce(next_attempt_at, 'epoch'), created_at, updated_at
		FROM webhook_deliveries WHERE endpoint_id = $1 AND business_id = $2
		ORDER BY created_at DESC, id LIMIT $3`, endpoint, business, limit)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		err := r.Scan(&d.ID, &d.EndpointID, &d.EventID, &d.Position, &d.EventType, &d.Status, &d.Attempts,
			&d.NextAttemptAt, &d.CreatedAt, &d.UpdatedAt)
		if d.Status != StatusPending || d.NextAttemptAt.Unix() == 0 {
			d.NextAttemptAt = time.Time{}
		}
		d.Log = []Attempt{}
		return d, err
	})
	if err != nil || len(out) == 0 {
		return out, err
	}
	ids := make([]uuid.UUID, len(out))
	index := map[uuid.UUID]int{}
	for i, d := range out {
		ids[i], index[d.ID] = d.ID, i
	}
	rows, err = s.Pool.Query(ctx, `SELECT delivery_id, attempt, attempted_at, coalesce(status_code, 0), duration_ms,
			response, error, coalesce(next_attempt_at, 'epoch')
		FROM webhook_attempts WHERE delivery_id = ANY ($1) ORDER BY delivery_id, attempt`, ids)
	if err != nil {
		return nil, fmt.Errorf("list attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id uuid.UUID
			a  Attempt
			ms int64
		)
		if err := rows.Scan(&id, &a.Number, &a.At, &a.StatusCode, &ms, &a.Response, &a.Error, &a.NextAttemptAt); err != nil {
			return nil, err
		}
		a.Duration = time.Duration(ms) * time.Millisecond
		if a.NextAttemptAt.Unix() == 0 {
			a.NextAttemptAt = time.Time{}
		}
		out[index[id]].Log = append(out[index[id]].Log, a)
	}
	return out, rows.Err()
}

// Retry makes a delivery due at once (again, if it succeeded or failed);
// ErrNotFound if the business's endpoint has no such delivery. A delivery
// being sent right now is left to that attempt's outcome.
func (s *Endpoints) Retry(ctx context.Context, business string, endpoint, delivery uuid.UUID) (Delivery, error) {
	var d Delivery
	err := s.Pool.QueryRow(ctx, `UPDATE webhook_deliveries SET status = 'pending',
			next_attempt_at = CASE WHEN status = 'pending' AND lease_token IS NOT NULL THEN next_attempt_at ELSE $4 END,
			updated_at = $4
		WHERE id = $3 AND endpoint_id = $2 AND business_id = $1
		RETURNING id, endpoint_id, event_id, position, event_type, status, attempts, next_attempt_at, created_at, updated_at`,
		business, endpoint, delivery, s.now()).Scan(&d.ID, &d.EndpointID, &d.EventID, &d.Position, &d.EventType, &d.Status,
		&d.Attempts, &d.NextAttemptAt, &d.CreatedAt, &d.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, ErrNotFound
	}
	d.Log = []Attempt{}
	return d, err
}

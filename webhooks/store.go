package webhooks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Endpoints is the registry of endpoints: the API's SQL on
// webhook_endpoints. Every method is scoped to one business; an id of
// another business is ErrNotFound.
type Endpoints struct {
	Pool   *pgxpool.Pool
	Policy Policy
	// Now is the server clock (default time.Now).
	Now func() time.Time
}

func (s *Endpoints) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

const endpointColumns = `id, business_id, url, events, description, secret, coalesce(previous_secret, ''),
	coalesce(previous_secret_until, 'epoch'), disabled, coalesce(disabled_reason, ''), coalesce(disabled_at, 'epoch'),
	coalesce(failing_since, 'epoch'), created_at, updated_at`

func scanEndpoint(row pgx.Row) (Endpoint, error) {
	var e Endpoint
	err := row.Scan(&e.ID, &e.BusinessID, &e.URL, &e.Events, &e.Description, &e.Secret, &e.PreviousSecret,
		&e.PreviousUntil, &e.Disabled, &e.DisabledReason, &e.DisabledAt, &e.FailingSince, &e.CreatedAt, &e.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, ErrNotFound
	}
	for _, t := range []*time.Time{&e.PreviousUntil, &e.DisabledAt, &e.FailingSince} {
		if t.Unix() == 0 {
			*t = time.Time{}
		}
	}
	return e, err
}

// Create validates n (fields, then the URL under the policy, resolving its
// host now) and registers it with a new secret; it returns a
// *domain.ValidationError and stores nothing if n is refused.
func (s *Endpoints) Create(ctx context.Context, business string, n NewEndpoint) (Endpoint, error) {
	if err := n.validate(); err != nil {
		return Endpoint{}, err
	}
	if _, err := s.Policy.CheckURL(ctx, n.URL); err != nil {
		return Endpoint{}, err
	}
	now := s.now()
	e, err := scanEndpoint(s.Pool.QueryRow(ctx, `INSERT INTO webhook_endpoints
		(id, business_id, url, events, description, secret, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING `+endpointColumns,
		uuid.New(), business, n.URL, n.events(), n.Description, NewSecret(), now))
	if err != nil {
		return Endpoint{}, fmt.Errorf("create webhook endpoint: %w", err)
	}
	return e, nil
}

// List returns the business's endpoints, oldest first.
func (s *Endpoints) List(ctx context.Context, business string) ([]Endpoint, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE business_id = $1 ORDER BY created_at, id`, business)
	if err != nil {
		return nil, fmt.Errorf("list webhook endpoints: %w", err)
	}
	defer rows.Close()
	out := []Endpoint{}
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Get returns one endpoint; ErrNotFound if the business has none of that id.
func (s *Endpoints) Get(ctx context.Context, business string, id uuid.UUID) (Endpoint, error) {
	return scanEndpoint(s.Pool.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE business_id = $1 AND id = $2`, business, id))
}

// Delete removes an endpoint with its deliveries; ErrNotFound if there is none.
func (s *Endpoints) Delete(ctx context.Context, business string, id uuid.UUID) error {
	tag, err := s.Pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE business_id = $1 AND id = $2`, business, id)
	if err != nil {
		return fmt.Errorf("delete webhook endpoint: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// SetDisabled disables (with reason "disabled by a user") or enables an
// endpoint; enabling also forgets its failures. Repeating is harmless.
func (s *Endpoints) SetDisabled(ctx context.Context, business string, id uuid.UUID, disabled bool) (Endpoint, error) {
	if disabled {
		return scanEndpoint(s.Pool.QueryRow(ctx, `UPDATE webhook_endpoints SET disabled = true,
			disabled_reason = CASE WHEN disabled THEN disabled_reason ELSE 'disabled by a user' END,
			disabled_at = CASE WHEN disabled THEN disabled_at ELSE $3 END, updated_at = $3
			WHERE business_id = $1 AND id = $2 RETURNING `+endpointColumns, business, id, s.now()))
	}
	return scanEndpoint(s.Pool.QueryRow(ctx, `UPDATE webhook_endpoints SET disabled = false, disabled_reason = NULL,
		disabled_at = NULL, failing_since = NULL, updated_at = $3
		WHERE business_id = $1 AND id = $2 RETURNING `+endpointColumns, business, id, s.now()))
}

// RotateSecret gives the endpoint a new secret; the old one keeps signing
// (beside the new) for RotationWindow.
func (s *Endpoints) RotateSecret(ctx context.Context, business string, id uuid.UUID) (Endpoint, error) {
	now := s.now()
	return scanEndpoint(s.Pool.QueryRow(ctx, `UPDATE webhook_endpoints SET previous_secret = secret,
		previous_secret_until = $4, secret = $3, updated_at = $5
		WHERE business_id = $1 AND id = $2 RETURNING `+endpointColumns, business, id, NewSecret(), now.Add(RotationWindow), now))
}

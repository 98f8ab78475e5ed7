package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// IdempotencyKeyTTL is how long a key's answer is kept.
const IdempotencyKeyTTL = 24 * time.Hour

// IdempotencyKeys stores the answers of commands sent with an
// Idempotency-Key (the idempotency_keys table): the first answer to a key is
// kept with the request's hash, so a retry of the same request gets it
// without the command running again. Every statement is one of its own: no
// transaction stays open while the command runs (an open transaction with an
// xid would hold back every projector of the cluster, see the README).
type IdempotencyKeys struct {
	pool *pgxpool.Pool
}

// NewIdempotencyKeys returns the keys stored in pool's database. Give it the
// pool the commands append on: a keyed command holds no connection between
// its statements, so the claims cannot starve the appends they wait for.
func NewIdempotencyKeys(pool *pgxpool.Pool) *IdempotencyKeys {
	return &IdempotencyKeys{pool: pool}
}

// KeyScope is what a key is unique within: the business, the request's
// method and path, and the key.
type KeyScope struct {
	Business, Method, Path, Key string
}

// Claim is a key claimed for one command.
type Claim struct {
	Scope KeyScope
	// CreatedAt is when the key was first claimed (a takeover keeps it): it
	// identifies this use of the key.
	CreatedAt time.Time
	// CommandID names the logical command: its events' ids derive from it
	// (see command_id.go), so an attempt that runs it again finds them.
	CommandID uuid.UUID
}

// StoredAnswer is what a key holds: the request's hash and, once its command
// answered, the answer (Status 0 while it runs).
type StoredAnswer struct {
	Hash   []byte
	Status int
	Header map[string][]string
	Body   []byte
}

// Claim claims the key in one statement of its own and returns the claim,
// or, when the key is held (answered, or claimed by a live request), what it
// holds. The claim's lease ends at now+lease. A claim whose lease ran out with
// no answer is taken over with its CommandID (its command may have
// appended); a key answered more than IdempotencyKeyTTL ago is claimed
// afresh. It returns the database's error, wrapped.
func (k *IdempotencyKeys) Claim(ctx context.Context, sc KeyScope, hash []byte, now time.Time, lease time.Duration) (*Claim, StoredAnswer, error) {
	now = now.UTC()
	var createdAt time.Time
	err := k.pool.QueryRow(ctx, `
		INSERT INTO idempotency_keys AS k (business_id, method, path, key, request_hash, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (business_id, method, path, key) DO UPDATE
		SET request_hash = EXCLUDED.request_hash, status = NULL, header = NULL, body = NULL,
		    created_at = CASE WHEN k.status IS NULL THEN k.created_at ELSE EXCLUDED.created_at END,
		    expires_at = EXCLUDED.expires_at
		WHERE k.expires_at <= EXCLUDED.created_at
		  AND (k.status IS NOT NULL OR k.request_hash = EXCLUDED.request_hash)
		RETURNING created_at`,
		sc.Business, sc.Method, sc.Path, sc.Key, hash, now, now.Add(lease)).Scan(&createdAt)
	switch {
	case err == nil:
		return &Claim{Scope: sc, CreatedAt: createdAt, CommandID: keyCommandID(sc, createdAt)}, StoredAnswer{}, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, StoredAnswer{}, fmt.Errorf("idempotency key: claim: %w", err)
	}
	var (
		a      StoredAnswer
		status *int
	)
	err = k.pool.QueryRow(ctx, `
		SELECT request_hash, status, header, body FROM idempotency_keys
		WHERE business_id = $1 AND method = $2 AND path = $3 AND key = $4`,
		sc.Business, sc.Method, sc.Path, sc.Key).Scan(&a.Hash, &status, &a.Header, &a.Body)
	if errors.Is(err, pgx.ErrNoRows) { // swept between the two: claim again
		return k.Claim(ctx, sc, hash, now, lease)
	}
	if err != nil {
		return nil, StoredAnswer{}, fmt.Errorf("idempotency key: read answer: %w", err)
	}
	if status != nil {
		a.Status = *status
	}
	return nil, a, nil
}

// keyCommandID names the command of one use of a key: a version 7 id with
// the claim's time, the rest derived from the key's scope.
func keyCommandID(sc KeyScope, createdAt time.Time) uuid.UUID {
	var base uuid.UUID
	ms := uint64(createdAt.UnixMilli())
	for i := range 6 {
		base[i] = byte(ms >> (8 * (5 - i)))
	}
	return DeriveID(base, "idempotency-key", sc.Business, sc.Method, sc.Path, sc.Key,
		strconv.FormatInt(createdAt.UnixMicro(), 10))
}

// Answer records the answer (status, header, body) under the claimed key,
// kept IdempotencyKeyTTL from the claim. A claim taken over meanwhile (its
// lease ran out) is left alone. It returns the database's error.
func (k *IdempotencyKeys) Answer(ctx context.Context, cl *Claim, status int, header map[string][]string, body []byte) error {
	h, err := json.Marshal(header)
	if err != nil {
		return err
	}
	sc := cl.Scope
	_, err = k.pool.Exec(ctx, `
		UPDATE idempotency_keys SET status = $6, header = $7, body = $8, expires_at = $5::timestamptz + $9::interval
		WHERE business_id = $1 AND method = $2 AND path = $3 AND key = $4 AND created_at = $5 AND status IS NULL`,
		sc.Business, sc.Method, sc.Path, sc.Key, cl.CreatedAt, status, string(h), body, IdempotencyKeyTTL)
	return err
}

// Release ends the claim's lease without an answer: the next request with
// the key takes it over at once (under the same CommandID). It returns the
// database's error.
func (k *IdempotencyKeys) Release(ctx context.Context, cl *Claim) error {
	sc := cl.Scope
	_, err := k.pool.Exec(ctx, `
		UPDATE idempotency_keys SET expires_at = created_at
		WHERE business_id = $1 AND method = $2 AND path = $3 AND key = $4 AND created_at = $5 AND status IS NULL`,
		sc.Business, sc.Method, sc.Path, sc.Key, cl.CreatedAt)
	return err
}

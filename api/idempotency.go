package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/eventstore"
)

// Idempotency-Key handling, for every command (every POST route): the first
// answer to a key is stored with the request's hash, and a retry of the same
// request gets that answer without the command running again.
const (
	// IdempotencyKeyHeader is the request header that names a logical command.
	IdempotencyKeyHeader = "Idempotency-Key"
	// IdempotentReplayedHeader is "true" on an answer replayed from a stored key.
	IdempotentReplayedHeader = "Idempotent-Replayed"
	// IdempotencyKeyTTL is how long a key's answer is kept.
	IdempotencyKeyTTL    = 24 * time.Hour
	maxIdempotencyKeyLen = 255
)

type handlerFunc = func(http.ResponseWriter, *http.Request, call) error

// idempotencyScope is what a key is unique within.
type idempotencyScope struct {
	business, method, path, key string
}

// idempotent wraps a command handler (called after authorization, so a stored
// answer never reaches a caller who may not make the request). Without the
// header it runs h as is. With it, the key is claimed by an INSERT in a
// transaction held while h runs: a concurrent request with the same key waits
// on the row's lock, then reads the answer committed with it; an answer of
// 500 or more (or a version conflict, which asks for a retry) is rolled back
// with the claim, so a retry runs afresh.
func (s *Server) idempotent(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c call) error {
		key, ok, err := idempotencyKey(r.Header)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			return h(w, r, c)
		}
		body, err := readBody(w, r)
		if err != nil {
			return err
		}
		// A keyed command runs to its end even if its client goes away, so
		// that the retry finds its answer; it keeps the request's deadline.
		deadline, ok := r.Context().Deadline()
		if !ok {
			deadline = time.Now().Add(s.cfg.RequestTimeout)
		}
		ctx, cancel := context.WithDeadline(context.WithoutCancel(r.Context()), deadline)
		defer cancel()
		// Its key's transaction holds a commands connection while the
		// command's own appends need others: at most half the pool may be
		// held by keys, or a burst of keyed commands would wait on itself.
		select {
		case s.keySlots <- struct{}{}:
			defer func() { <-s.keySlots }()
		case <-ctx.Done():
			return ctx.Err()
		}
		r = r.WithContext(ctx)
		r.Body = io.NopCloser(bytes.NewReader(body))
		scope := idempotencyScope{business: c.business, method: r.Method, path: r.URL.Path, key: key}
		hash := requestHash(r.Method, r.URL.Path, body)

		tx, stored, err := s.claimKey(ctx, scope, hash)
		if err != nil {
			return err
		}
		if tx == nil {
			if !bytes.Equal(stored.hash, hash) {
				return newProblem(CodeIdempotencyKeyReused, fmt.Sprintf(
					"Idempotency-Key %q was used with another request to %s %s", key, r.Method, r.URL.Path))
			}
			stored.replay(w)
			return nil
		}
		defer tx.Rollback(context.WithoutCancel(ctx))

		rec := &answerRecorder{header: http.Header{}, status: http.StatusOK}
		herr := h(rec, r, c)
		if herr != nil {
			s.writeError(rec, r, herr)
		}
		if rec.status < 500 && !errors.Is(herr, eventstore.ErrVersionConflict) {
			if err := storeAnswer(ctx, tx, scope, rec); err != nil {
				// The command ran: answer it; a retry will run it again.
				s.logger.Error("store idempotent answer", "path", r.URL.Path, "err", err, "request_id", requestID(ctx))
			}
		}
		rec.writeTo(w)
		return nil
	}
}

// idempotencyKey returns the request's key, whether it has one, and a
// validation problem naming the header unless it is 1 to 255 printable ASCII
// characters (and sent once).
func idempotencyKey(h http.Header) (string, bool, error) {
	values := h.Values(IdempotencyKeyHeader)
	if len(values) == 0 {
		return "", false, nil
	}
	invalid := fieldProblem(IdempotencyKeyHeader, fmt.Sprintf("must be sent once, 1 to %d printable ASCII characters", maxIdempotencyKeyLen))
	key := values[0]
	if len(values) > 1 || len(key) == 0 || len(key) > maxIdempotencyKeyLen {
		return "", false, invalid
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", false, invalid
		}
	}
	return key, true, nil
}

// readBody reads the whole body (at most 64 KiB) so it can be hashed and then
// decoded by the handler.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, newProblem(CodeBodyTooLarge, "request body exceeds 64 KiB")
		}
		return nil, newProblem(CodeInvalidRequest, "could not read the request body")
	}
	return body, nil
}

// requestHash identifies a request: the same key may only be repeated with
// the same method, path and body (byte for byte).
func requestHash(method, path string, body []byte) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", method, path)
	h.Write(body)
	return h.Sum(nil)
}

// storedAnswer is a committed first answer.
type storedAnswer struct {
	hash   []byte
	status int
	header http.Header
	body   []byte
}

func (a storedAnswer) replay(w http.ResponseWriter) {
	for k, vs := range a.header {
		w.Header()[k] = vs
	}
	w.Header().Set(IdempotentReplayedHeader, "true")
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// claimKey either claims the key, returning the open transaction that holds
// it (commit it with the answer, or roll it back), or returns the answer
// stored under it. An expired key that was not swept yet is claimed afresh.
func (s *Server) claimKey(ctx context.Context, sc idempotencyScope, hash []byte) (pgx.Tx, storedAnswer, error) {
	tx, err := s.store.Pool().Begin(ctx) // the commands pool: a keyed command holds its key while it runs
	if err != nil {
		return nil, storedAnswer{}, fmt.Errorf("idempotency key: begin: %w", err)
	}
	now := s.now().UTC()
	tag, err := tx.Exec(ctx, `
		INSERT INTO idempotency_keys (business_id, method, path, key, request_hash, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (business_id, method, path, key) DO UPDATE
		SET request_hash = EXCLUDED.request_hash, status = NULL, header = NULL, body = NULL,
		    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
		WHERE idempotency_keys.expires_at <= EXCLUDED.created_at`,
		sc.business, sc.method, sc.path, sc.key, hash, now, now.Add(IdempotencyKeyTTL))
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, storedAnswer{}, fmt.Errorf("idempotency key: claim: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return tx, storedAnswer{}, nil
	}
	defer tx.Rollback(ctx)
	var a storedAnswer
	err = tx.QueryRow(ctx, `
		SELECT request_hash, status, header, body FROM idempotency_keys
		WHERE business_id = $1 AND method = $2 AND path = $3 AND key = $4`,
		sc.business, sc.method, sc.path, sc.key).Scan(&a.hash, &a.status, &a.header, &a.body)
	if err != nil {
		return nil, storedAnswer{}, fmt.Errorf("idempotency key: read answer: %w", err)
	}
	return nil, a, nil
}

// storeAnswer records the answer under the claimed key and commits the claim.
func storeAnswer(ctx context.Context, tx pgx.Tx, sc idempotencyScope, rec *answerRecorder) error {
	header, err := json.Marshal(rec.header)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE idempotency_keys SET status = $5, header = $6, body = $7
		WHERE business_id = $1 AND method = $2 AND path = $3 AND key = $4`,
		sc.business, sc.method, sc.path, sc.key, rec.status, string(header), rec.body.Bytes()); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// answerRecorder buffers a handler's answer so it can be stored before it is sent.
type answerRecorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (a *answerRecorder) Header() http.Header { return a.header }

func (a *answerRecorder) WriteHeader(code int) {
	if !a.wrote {
		a.status, a.wrote = code, true
	}
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return a.body.Write(b)
}

func (a *answerRecorder) writeTo(w http.ResponseWriter) {
	for k, vs := range a.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body.Bytes())
}

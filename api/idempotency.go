package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/runs"
)

// Idempotency-Key handling, for every command (every POST route): the first
// answer to a key is stored with the request's hash, and a retry of the same
// request gets that answer without the command running again. The keys'
// storage (claims, answers, the sweep) is runs.IdempotencyKeys; this file is
// the HTTP side: the header, the request's hash, the stored answer written.
const (
	// IdempotencyKeyHeader is the request header that names a logical command.
	IdempotencyKeyHeader = "Idempotency-Key"
	// IdempotentReplayedHeader is "true" on an answer replayed from a stored key.
	IdempotentReplayedHeader = "Idempotent-Replayed"
	maxIdempotencyKeyLen     = 255
)

type handlerFunc = func(http.ResponseWriter, *http.Request, call) error

// idempotent wraps a command handler (called after authorization, so a stored
// answer never reaches a caller who may not make the request). Without the
// header it runs h as is. With it:
//
//   - the key is claimed by a short statement of its own (no transaction
//     stays open while the command runs: an open transaction with an xid
//     would hold back every projector of the cluster, see the README);
//   - the claim names the logical command (its CommandID, derived from the
//     key and the claim's time): the command's event ids derive from it, so
//     an attempt that runs it again (a retry after a crash, or after the
//     claim's lease ran out) finds its events in the log and answers from
//     them instead of appending twice;
//   - its answer is stored by a second statement; an answer of 500 or more
//     (or a version conflict, which asks for a retry) releases the claim, so
//     a retry runs afresh under the same CommandID.
//
// A concurrent request with the same key waits for the stored answer, or
// for the claim's lease to run out (its holder died), then takes it over.
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
		scope := runs.KeyScope{Business: c.business, Method: r.Method, Path: r.URL.Path, Key: key}
		hash := requestHash(r.Method, r.URL.Path, body)

		cl, err := s.awaitClaim(ctx, w, scope, hash, time.Until(deadline)+claimLeaseMargin)
		if err != nil || cl == nil {
			return err
		}
		r = r.WithContext(withCommandID(ctx, cl.CommandID))
		r.Body = io.NopCloser(bytes.NewReader(body))

		s.hooks.before(ctx)
		rec := &answerRecorder{header: http.Header{}, status: http.StatusOK}
		herr := h(rec, r, c)
		if herr != nil {
			s.writeError(rec, r, herr)
		}
		s.hooks.answer(ctx)
		// The answer is stored even if the deadline passed meanwhile.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), claimLeaseMargin)
		defer scancel()
		if rec.status < 500 && !errors.Is(herr, eventstore.ErrVersionConflict) {
			if err := s.keys.Answer(sctx, cl, rec.status, rec.header, rec.body.Bytes()); err != nil {
				// The command ran: answer it; a retry finds its events.
				s.logger.Error("store idempotent answer", "path", r.URL.Path, "err", err, "request_id", requestID(ctx))
			}
		} else if err := s.keys.Release(sctx, cl); err != nil {
			s.logger.Warn("release idempotency claim", "path", r.URL.Path, "err", err, "request_id", requestID(ctx))
		}
		rec.writeTo(w)
		return nil
	}
}

// awaitClaim claims the key and returns the claim, or answers the request
// itself (a stored answer replayed, or 422 for another request under the
// key) and returns nil. While another request holds the key's live claim,
// it polls for that request's answer.
func (s *Server) awaitClaim(ctx context.Context, w http.ResponseWriter, sc runs.KeyScope, hash []byte, lease time.Duration) (*runs.Claim, error) {
	pause := claimPollMin
	for {
		cl, stored, err := s.keys.Claim(ctx, sc, hash, s.now(), lease)
		if err != nil {
			return nil, err
		}
		if cl != nil {
			return cl, nil
		}
		if !bytes.Equal(stored.Hash, hash) {
			return nil, newProblem(CodeIdempotencyKeyReused, fmt.Sprintf(
				"Idempotency-Key %q was used with another request to %s %s", sc.Key, sc.Method, sc.Path))
		}
		if stored.Status != 0 {
			replay(w, stored)
			return nil, nil
		}
		t := time.NewTimer(pause) // real time: the holder's progress, not the server's clock
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, retryable(CodeUnavailable, fmt.Sprintf(
				"a request with Idempotency-Key %q is still running; retry shortly", sc.Key), time.Second)
		case <-t.C:
		}
		pause = min(2*pause, claimPollMax)
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

// replay writes a stored answer, marked as replayed.
func replay(w http.ResponseWriter, a runs.StoredAnswer) {
	for k, vs := range a.Header {
		w.Header()[k] = vs
	}
	w.Header().Set(IdempotentReplayedHeader, "true")
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}

const (
	// claimLeaseMargin is how long a claim outlives its request's deadline
	// before another request may take it over.
	claimLeaseMargin = time.Second
	// claimPollMin and claimPollMax pace a request waiting for the answer of
	// another one with the same key.
	claimPollMin = 5 * time.Millisecond
	claimPollMax = 100 * time.Millisecond
)

type commandIDKey struct{}

// withCommandID carries a keyed command's CommandID to its handler.
func withCommandID(ctx context.Context, id uuid.UUID) context.Context {
	return context.WithValue(ctx, commandIDKey{}, id)
}

// commandIDOf is the request's CommandID, uuid.Nil for a command without a key.
func commandIDOf(ctx context.Context) uuid.UUID {
	id, _ := ctx.Value(commandIDKey{}).(uuid.UUID)
	return id
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

// commandHooks are the tests' seams in a keyed command: before it runs
// (after its key is claimed), and after it ran, before its answer is stored.
type commandHooks struct {
	beforeCommand, beforeAnswer func(context.Context)
}

func (h commandHooks) before(ctx context.Context) {
	if h.beforeCommand != nil {
		h.beforeCommand(ctx)
	}
}

func (h commandHooks) answer(ctx context.Context) {
	if h.beforeAnswer != nil {
		h.beforeAnswer(ctx)
	}
}

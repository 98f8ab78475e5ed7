package runs_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
)

// The keys' lifecycle on a real database: a claim, a second request waiting
// on it, the stored answer, a takeover after a release or an expired lease
// (same CommandID), and a fresh claim past the TTL (a new CommandID).
func TestIdempotencyKeyClaimAnswerAndTakeover(t *testing.T) {
	ctx := context.Background()
	keys := runs.NewIdempotencyKeys(pgtest.NewDB(t))
	sc := runs.KeyScope{Business: "acme", Method: "POST", Path: "/v1/businesses/acme/runs", Key: "k1"}
	hash, other := []byte("hash-a"), []byte("hash-b")
	lease := 5 * time.Second

	first, _, err := keys.Claim(ctx, sc, hash, t0, lease)
	if err != nil || first == nil {
		t.Fatalf("first claim = %v, %v", first, err)
	}
	held, stored, err := keys.Claim(ctx, sc, hash, t0.Add(time.Second), lease)
	if err != nil || held != nil || stored.Status != 0 || !bytes.Equal(stored.Hash, hash) {
		t.Fatalf("claim of a live key = %v, %+v, %v; want it held, unanswered", held, stored, err)
	}

	if err := keys.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	again, _, err := keys.Claim(ctx, sc, hash, t0.Add(2*time.Second), lease)
	if err != nil || again == nil || again.CommandID != first.CommandID || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("claim after release = %+v, %v; want the same command %s", again, err, first.CommandID)
	}
	if held, _, _ := keys.Claim(ctx, sc, other, t0.Add(time.Minute), lease); held != nil {
		t.Fatal("an unanswered claim whose lease ran out was taken over by another request")
	}
	taken, _, err := keys.Claim(ctx, sc, hash, t0.Add(time.Minute), lease)
	if err != nil || taken == nil || taken.CommandID != first.CommandID {
		t.Fatalf("takeover after the lease = %+v, %v; want the same command %s", taken, err, first.CommandID)
	}

	if err := keys.Answer(ctx, taken, 201, map[string][]string{"Location": {"/x"}}, []byte(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
	held, stored, err = keys.Claim(ctx, sc, other, t0.Add(time.Hour), lease)
	if err != nil || held != nil || stored.Status != 201 || stored.Header["Location"][0] != "/x" ||
		string(stored.Body) != `{"ok":true}` || !bytes.Equal(stored.Hash, hash) {
		t.Fatalf("claim of an answered key = %v, %+v, %v; want the stored answer", held, stored, err)
	}

	fresh, _, err := keys.Claim(ctx, sc, other, t0.Add(runs.IdempotencyKeyTTL+time.Second), lease)
	if err != nil || fresh == nil || fresh.CommandID == first.CommandID {
		t.Fatalf("claim past the TTL = %+v, %v; want a new command", fresh, err)
	}
}

// The sweep deletes answered keys past their TTL, and an unanswered claim
// only 24 hours after it was made (its command may have appended).
func TestIdempotencySweepKeepsUnansweredClaimsADay(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	keys := runs.NewIdempotencyKeys(pool)
	scope := func(k string) runs.KeyScope {
		return runs.KeyScope{Business: "acme", Method: "POST", Path: "/p", Key: k}
	}
	answered, _, err := keys.Claim(ctx, scope("answered"), []byte("h"), t0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Answer(ctx, answered, 200, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.Claim(ctx, scope("orphan"), []byte("h"), t0.Add(time.Hour), time.Second); err != nil {
		t.Fatal(err)
	}
	stored := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		at      time.Time
		deleted int64
		left    int
	}{
		{t0.Add(runs.IdempotencyKeyTTL - time.Second), 0, 2},
		{t0.Add(runs.IdempotencyKeyTTL), 1, 1},
		{t0.Add(time.Hour + 24*time.Hour - time.Second), 0, 1},
		{t0.Add(time.Hour + 24*time.Hour), 1, 0},
	} {
		if n, err := keys.Sweep(ctx, tc.at); err != nil || n != tc.deleted || stored() != tc.left {
			t.Fatalf("sweep at %s deleted %d (%v), %d left; want %d deleted, %d left", tc.at, n, err, stored(), tc.deleted, tc.left)
		}
	}
}

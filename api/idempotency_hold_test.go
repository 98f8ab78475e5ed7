package api_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
)

// startAndRead starts a run for business and reads it back with ?after= its
// position, returning how long the read took (the projector's delay).
func (e *env) startAndRead(business string) time.Duration {
	e.t.Helper()
	r := e.must(e.do("POST", "/v1/businesses/"+business+"/runs", e.token(business, api.RoleWorker),
		map[string]any{"total_calls": 3, "worker_id": "w"}), 201, "")
	pos := r.header.Get("Runledger-Position")
	began := time.Now()
	read := e.do("GET", "/v1/businesses/"+business+"/runs/active?after="+pos, e.token(business, api.RoleUser), nil)
	took := time.Since(began)
	if read.status != http.StatusOK {
		e.t.Fatalf("read of %s after position %s: status %d after %s: %s", business, pos, read.status, took.Round(time.Millisecond), read.raw)
	}
	return took
}

// A keyed command that waits (here on an injected lock, for 5 s) holds no
// transaction that freezes the projector: another business's read with
// ?after= is delayed by at most 50 ms. The delay is measured against reads
// made in the same test with nothing held (the median of five), and the
// best of three reads under the hold is compared, so a loaded machine's
// scheduling noise does not decide it; a frozen projector answers 503
// after the whole consistency wait.
func TestKeyedCommandHeldDoesNotDelayOtherReads(t *testing.T) {
	e := newEnv(t)
	var baseline []time.Duration
	for i := range 5 {
		baseline = append(baseline, e.startAndRead("base"+strconv.Itoa(i)))
	}
	slices.Sort(baseline)
	base := baseline[2]

	a := "/v1/businesses/a"
	id := e.must(e.do("POST", a+"/runs", e.token("a", api.RoleWorker), map[string]any{"total_calls": 3, "worker_id": "w"}), 201, "").str("run_id")
	held := make(chan struct{})
	release := make(chan struct{})
	api.HoldCommands(e.server, func(ctx context.Context) {
		close(held)
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
	})
	done := make(chan response, 1)
	go func() {
		done <- e.doWith("POST", a+"/runs/"+id+"/complete", e.token("a", api.RoleWorker),
			map[string]any{"outcome": "completed", "completed_calls": 3, "failed_calls": 0}, keyed("complete-a"))
	}()
	<-held
	best := time.Hour
	for i := range 3 {
		best = min(best, e.startAndRead("b"+strconv.Itoa(i)))
	}
	close(release)
	if r := <-done; r.status != http.StatusOK {
		t.Fatalf("the held keyed complete answered %d: %s", r.status, r.raw)
	}
	t.Logf("read after a start: %s with nothing held (median of 5), %s with a keyed command held (best of 3)", base, best)
	if best > base+50*time.Millisecond {
		t.Fatalf("a held keyed command delayed another business's read by %s (%s against %s)", best-base, best, base)
	}
}

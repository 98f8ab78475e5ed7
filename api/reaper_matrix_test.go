package api_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/reaper"
)

// Every cell of {live, silent past TTL} × {cancel requested, not} ×
// {reaper runs first, read happens first}: what GET …/runs/active answers,
// and the final status and end reason.
func TestReaperAndReadMatrix(t *testing.T) {
	type want struct {
		activeStatus int
		status       string
		endReason    any
	}
	cells := []struct {
		silent, cancel, reaperFirst bool
		want                        want
	}{
		{false, false, true, want{200, "running", nil}},
		{false, false, false, want{200, "running", nil}},
		{false, true, true, want{200, "running", nil}},
		{false, true, false, want{200, "running", nil}},
		{true, false, true, want{404, "failed", "stale"}},
		{true, false, false, want{404, "failed", "stale"}},
		{true, true, true, want{404, "cancelled", "cancelled"}},
		{true, true, false, want{404, "cancelled", "cancelled"}},
	}
	for _, c := range cells {
		name := map[bool]string{false: "live", true: "silent"}[c.silent] + "/" +
			map[bool]string{false: "no-cancel", true: "cancel"}[c.cancel] + "/" +
			map[bool]string{false: "read-first", true: "reaper-first"}[c.reaperFirst]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			user := e.token("acme", api.RoleUser)
			id := e.start("acme", 10)
			e.clock.Advance(time.Minute)
			if c.cancel {
				e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/cancel", user, nil), 202, "")
			}
			if c.silent {
				e.clock.Advance(15 * time.Minute)
			} else {
				e.clock.Advance(10 * time.Minute)
			}
			r, err := reaper.New(reaper.Config{Runner: e.runner, Interval: time.Second, NoLock: true,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			sweep := func() {
				if _, err := r.Sweep(context.Background()); err != nil {
					t.Fatal(err)
				}
				e.caughtUp()
			}
			read := func() {
				code := "no_active_run"
				if c.want.activeStatus == 200 {
					code = ""
				}
				e.must(e.do("GET", "/v1/businesses/acme/runs/active", user, nil), c.want.activeStatus, code)
			}
			if c.reaperFirst {
				sweep()
				read()
			} else {
				read()
				sweep()
			}
			final := e.must(e.do("GET", "/v1/businesses/acme/runs/"+id, user, nil), 200, "")
			if final.str("status") != c.want.status || final.body["end_reason"] != c.want.endReason ||
				final.body["cancel_requested"] != c.cancel {
				t.Fatalf("final = %s, want %s/%v", final.raw, c.want.status, c.want.endReason)
			}
		})
	}
}

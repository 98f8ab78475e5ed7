package demo

import (
	"reflect"
	"testing"
	"time"

	"github.com/runledger/runledger/api/client"
)

// The summary says only what is true of a run (issue 19 item 1): "silent"
// (no heartbeat) and "stalled" (heartbeats without progress) are different
// states. A run whose worker is silent is not called stalled, however long
// ago its last progress; a beating run without progress says since when.
func TestRunFlagsSayOnlyWhatIsTrue(t *testing.T) {
	now := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)
	since := now.Add(-1 * time.Second) // stalled_since = last progress (now-3s) + stall_after (2s)
	base := client.Run{ServerTime: now, LastHeartbeatAt: now.Add(-200 * time.Millisecond), StallAfter: client.Duration(2 * time.Second)}
	for _, tc := range []struct {
		name string
		edit func(*client.Run)
		want []string
	}{
		{"working", func(*client.Run) {}, nil},
		{"a dead worker's run (the server still flags it stalled)", func(r *client.Run) {
			r.LastHeartbeatAt, r.Stalled, r.StalledSince = now.Add(-3*time.Second), true, &since
		}, []string{"silent 3s"}},
		{"heartbeats without progress", func(r *client.Run) { r.Stalled, r.StalledSince = true, &since }, []string{"stalled: no progress for 3s"}},
		{"paused, cancel requested", func(r *client.Run) { r.Paused, r.CancelRequested = true, true }, []string{"cancel requested", "paused"}},
	} {
		run := base
		tc.edit(&run)
		if got := runFlags(run, 1300*time.Millisecond); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: flags %q, want %q", tc.name, got, tc.want)
		}
	}
}

package main

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/servetest"
	"github.com/runledger/runledger/projections"
)

// `audit --json` carries the lifecycle records the text output shows: a
// compaction of the business's run, beside its timeline.
func TestAuditJSONCarriesTheLifecycleRecords(t *testing.T) {
	w := newCrashWorld(t, 1, 30)
	if out, err := exec.Command(servetest.Binary(t), "compact", "--database-url", w.url, "--ended-before", "1h").CombinedOutput(); err != nil {
		t.Fatalf("compact: %v\n%s", err, out)
	}
	out, err := exec.Command(servetest.Binary(t), "audit", "--database-url", w.url, "--business", "b00", "--json").Output()
	if err != nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	var got struct {
		Events    []projections.TimelineEntry  `json:"events"`
		Lifecycle []eventstore.LifecycleRecord `json:"lifecycle"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	if len(got.Events) == 0 || len(got.Lifecycle) != 1 {
		t.Fatalf("audit --json: %d events, lifecycle %+v; want the timeline and one compaction\n%s", len(got.Events), got.Lifecycle, out)
	}
	r := got.Lifecycle[0]
	if r.Kind != "compaction" || r.RunID != got.Events[0].RunID || r.HeartbeatsRemoved == 0 || r.HeartbeatsRemoved >= r.HeartbeatsBefore {
		t.Fatalf("audit --json lifecycle record %+v does not describe the compaction of run %s", r, got.Events[0].RunID)
	}
}

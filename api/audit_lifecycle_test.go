package api_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// The operator timeline carries the compactions of the business's runs, as
// `runledger audit` does: a reader of the API learns why heartbeats are missing.
func TestTimelineCarriesTheLifecycleRecords(t *testing.T) {
	e := newEnv(t)
	run := e.start("acme", 1000)
	worker := e.token("acme", api.RoleWorker)
	for i := 1; i <= 40; i++ {
		e.clock.Advance(30 * time.Second)
		e.must(e.do("POST", "/v1/businesses/acme/runs/"+run+"/heartbeat", worker,
			map[string]any{"completed_calls": i, "failed_calls": 0}), 200, "")
	}
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+run+"/complete", worker,
		map[string]any{"outcome": "completed", "completed_calls": 40, "failed_calls": 0}), 200, "")
	e.caughtUp()
	res, err := eventstore.New(e.pool).Compact(context.Background(), eventstore.CompactParams{
		EndedBefore: t0.Add(24 * time.Hour), Actor: "operator:test", Policy: domain.DefaultPolicy()})
	if err != nil || res.Runs != 1 {
		t.Fatalf("compact: %+v, %v", res, err)
	}
	tl := e.must(e.do("GET", "/v1/businesses/acme/timeline", e.token("*", api.RoleOperator), nil), 200, "")
	var got struct {
		Lifecycle []eventstore.LifecycleRecord `json:"lifecycle"`
	}
	if err := json.Unmarshal(tl.raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Lifecycle) != 1 || got.Lifecycle[0].Kind != "compaction" || got.Lifecycle[0].RunID.String() != run ||
		got.Lifecycle[0].Actor != "operator:test" {
		t.Fatalf("timeline lifecycle = %+v; want the compaction of run %s\n%s", got.Lifecycle, run, tl.raw)
	}
	other := e.must(e.do("GET", "/v1/businesses/other/timeline", e.token("*", api.RoleOperator), nil), 200, "")
	if _, ok := other.body["lifecycle"]; ok {
		t.Fatalf("another business's timeline carries lifecycle records: %s", other.raw)
	}
}

package projections

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
)

// TestOnlyProgressMovedSeesEveryOtherField: a row whose change moves any
// field but the ones updateProgress writes must take the full update, or
// that field would never reach the table. Every field of domain.Run is
// tried, so a field added later is covered without touching this test.
func TestOnlyProgressMovedSeesEveryOtherField(t *testing.T) {
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	prev := RunRow{Run: domain.Run{ID: uuid.New(), BusinessID: "b", WorkerID: "w", Status: domain.StatusRunning,
		TotalCalls: 10, CompletedCalls: 1, StartedAt: at, LastHeartbeatAt: at, LastProgressAt: at, Version: 2}, LastPosition: 7}
	progress := map[string]bool{"CompletedCalls": true, "FailedCalls": true, "LastHeartbeatAt": true,
		"LastProgressAt": true, "Version": true}
	runType := reflect.TypeFor[domain.Run]()
	for i := range runType.NumField() {
		f := runType.Field(i)
		next := prev
		v := reflect.ValueOf(&next.Run).Elem().Field(i)
		switch {
		case f.Type == reflect.TypeFor[time.Time]():
			v.Set(reflect.ValueOf(at.Add(time.Second)))
		case f.Type == reflect.TypeFor[uuid.UUID]():
			v.Set(reflect.ValueOf(uuid.New()))
		case v.Kind() == reflect.Bool:
			v.SetBool(!v.Bool())
		case v.CanInt():
			v.SetInt(v.Int() + 1)
		case v.Kind() == reflect.String:
			v.SetString(v.String() + "x")
		default:
			t.Fatalf("field %s (%s): the test cannot change it; teach it how", f.Name, f.Type)
		}
		if got := onlyProgressMoved(prev, next); got != progress[f.Name] {
			t.Errorf("onlyProgressMoved with %s changed = %v, want %v", f.Name, got, progress[f.Name])
		}
	}
	// updateProgress writes exactly the columns of those fields.
	st := (&rowSet{proj: projection{keyColumn: "run_id"}, table: "runs"}).updateProgress([]*pendingRow{{expected: prev, change: change{op: put, row: prev}}})
	sql := strings.Join(strings.Fields(st.sql), " ")
	set := sql[strings.Index(sql, " SET ")+5 : strings.Index(sql, " FROM ")]
	var written []string
	for _, part := range strings.Split(set, ",") {
		written = append(written, strings.TrimSpace(strings.SplitN(part, "=", 2)[0]))
	}
	slices.Sort(written)
	columns := []string{"last_position"}
	storedType := reflect.TypeFor[storedRow]()
	for name := range progress {
		f, ok := storedType.FieldByName(name)
		if !ok {
			t.Fatalf("progress field %s is not a column", name)
		}
		columns = append(columns, f.Tag.Get("db"))
	}
	slices.Sort(columns)
	if !slices.Equal(written, columns) {
		t.Errorf("updateProgress writes %v; the fields onlyProgressMoved lets change are the columns %v", written, columns)
	}

	next := prev
	next.LastPosition++
	if !onlyProgressMoved(prev, next) {
		t.Error("a new log position alone must take the progress update")
	}
	next.Run = domain.Evolve(prev.Run, domain.Heartbeat{CompletedCalls: 3, OccurredAt: at.Add(time.Minute)})
	if !onlyProgressMoved(prev, next) {
		t.Errorf("a heartbeat with progress must take the progress update: %+v", next.Run)
	}
}

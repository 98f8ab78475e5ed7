package projections

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/internal/pgtest"
)

// seedOpenRuns writes n open runs straight into active_runs, business
// b0000…, the i-th silent since base+i seconds (two businesses share each
// instant, to exercise the cursor's tie-break).
func seedOpenRuns(t *testing.T, pool *pgxpool.Pool, n int, base time.Time) {
	t.Helper()
	rows := make([]RunRow, n)
	for i := range rows {
		at := base.Add(time.Duration(i/2) * time.Second)
		rows[i] = RunRow{Run: domain.Run{ID: uuid.New(), BusinessID: fmt.Sprintf("b%05d", n-i), WorkerID: "w",
			Status: domain.StatusRunning, TotalCalls: 10, StartedAt: at, LastHeartbeatAt: at, Version: 1}, LastPosition: int64(i + 1)}
	}
	_, err := pool.CopyFrom(context.Background(), pgx.Identifier{"active_runs"}, columnNames(runColumns),
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) { return rows[i].values(), nil }))
	if err != nil {
		t.Fatal(err)
	}
}

func TestListOpenRunsOrderPagingAndScope(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	base := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	seedOpenRuns(t, pool, 7, base)

	var got []string
	var after *OpenCursor
	for page := 0; page < 10; page++ {
		rows, next, err := ListOpenRuns(ctx, pool, OpenRunsQuery{Limit: 3, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s@%d", r.BusinessID, r.LastHeartbeatAt.Sub(base)/time.Second))
		}
		if next == nil {
			break
		}
		after = next
	}
	// Longest silence first; equal silences by business id.
	want := "b00006@0 b00007@0 b00004@1 b00005@1 b00002@2 b00003@2 b00001@3"
	if strings.Join(got, " ") != want {
		t.Fatalf("pages = %v, want %s", got, want)
	}

	one, next, err := ListOpenRuns(ctx, pool, OpenRunsQuery{BusinessID: "b00004", Limit: 3})
	if err != nil || next != nil || len(one) != 1 || one[0].BusinessID != "b00004" {
		t.Fatalf("one business = %+v, %v, %v", one, next, err)
	}
	none, _, err := ListOpenRuns(ctx, pool, OpenRunsQuery{BusinessID: "nobody", Limit: 3})
	if err != nil || len(none) != 0 {
		t.Fatalf("unknown business = %+v, %v", none, err)
	}
	if _, _, err := ListOpenRuns(ctx, pool, OpenRunsQuery{}); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

// The list of every business's open runs reads active_runs, which holds
// the open runs only, and keeps the page's rows in a bounded top-N sort: no
// index holds last_heartbeat_at, which every heartbeat moves (migration
// 0011), so that a heartbeat's update of active_runs can be HOT. One
// business's list is a primary-key lookup. Checked with EXPLAIN ANALYZE on a
// table large enough for the planner to care.
func TestListOpenRunsPlans(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	base := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	seedOpenRuns(t, pool, 20000, base)
	if _, err := pool.Exec(ctx, `ANALYZE active_runs`); err != nil {
		t.Fatal(err)
	}
	cursor := &OpenCursor{LastHeartbeatAt: base.Add(time.Hour), BusinessID: "b00100"}
	for _, c := range []struct {
		name string
		q    OpenRunsQuery
		// want is in the plan: a bounded sort of the open runs, or the
		// one business's row through the primary key.
		want string
	}{
		{"first page", OpenRunsQuery{Limit: 50}, "Sort Method: top-N heapsort"},
		{"next page", OpenRunsQuery{Limit: 50, After: cursor}, "Sort Method: top-N heapsort"},
		{"one business", OpenRunsQuery{Limit: 50, BusinessID: "b00042"}, "Index Scan using active_runs_pkey"},
		{"one business, next page", OpenRunsQuery{Limit: 50, BusinessID: "b00042", After: cursor}, "Index Scan using active_runs_pkey"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sql, args := openRunsSQL(c.q)
			rows, err := pool.Query(ctx, `EXPLAIN ANALYZE `+sql, args...)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if !strings.Contains(text, c.want) {
				t.Fatalf("plan has no %q:\n%s", c.want, text)
			}
			t.Logf("plan:\n%s", text)
		})
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The thin store is B1's floor (issue 24): the thinnest durable HTTP
// heartbeat store, run as its own process (`runledger-bench thin-store`)
// beside `serve`. It answers the routes and JSON bodies the generator sends,
// checks that a bearer token is present (no JWT), and stores every start and
// heartbeat as a row of an events-shaped table through group commit: one
// multi-row INSERT in flight at a time, up to thinBatch rows, each committed
// with the cluster's fsync on before its requests are answered. No read
// models, no decisions.

// thinBatch is the most rows one INSERT carries.
const thinBatch = 64

// thinTable is created by the bench beside runledger's events, with the same
// columns, defaults and indexes.
const thinTable = "thin_events"

// thinStoreMain runs the thin store: DATABASE_URL names the database (holding
// thinTable), THIN_ADDR the listening address.
func thinStoreMain() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	l, err := net.Listen("tcp", os.Getenv("THIN_ADDR"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newThinStore(ctx, conn), ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newThinStore returns the thin store's routes, committing through conn
// until ctx ends.
func newThinStore(ctx context.Context, conn *pgx.Conn) http.Handler {
	c := &committer{conn: conn, in: make(chan *thinRow, 4096)}
	go c.run(ctx)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /v1/businesses/{business}/runs", c.start)
	mux.HandleFunc("POST /v1/businesses/{business}/runs/{run}/heartbeat", c.heartbeat)
	return mux
}

// thinRow is one event waiting for its group commit; done receives the outcome.
type thinRow struct {
	stream        uuid.UUID
	version       int64
	business, typ string
	data          []byte
	done          chan error
}

type committer struct {
	conn     *pgx.Conn
	in       chan *thinRow
	versions sync.Map // run id → *atomic.Int64, the run's last stream version
}

func hasBearer(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && tok != ""
}

func (c *committer) start(w http.ResponseWriter, r *http.Request) {
	if !hasBearer(r) {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	var body struct {
		TotalCalls int64  `json:"total_calls"`
		WorkerID   string `json:"worker_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":"bad_request"}`, http.StatusBadRequest)
		return
	}
	run := uuid.New()
	c.versions.Store(run, new(atomic.Int64))
	data, _ := json.Marshal(map[string]any{"run_id": run, "total_calls": body.TotalCalls, "worker_id": body.WorkerID})
	if err := c.store(r, run, "RunStarted", data); err != nil {
		http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"run_id": run, "state": "running"})
}

func (c *committer) heartbeat(w http.ResponseWriter, r *http.Request) {
	if !hasBearer(r) {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	run, err := uuid.Parse(r.PathValue("run"))
	if err != nil {
		http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
		return
	}
	var body struct {
		CompletedCalls int64 `json:"completed_calls"`
		FailedCalls    int64 `json:"failed_calls"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":"bad_request"}`, http.StatusBadRequest)
		return
	}
	data, _ := json.Marshal(map[string]any{"completed_calls": body.CompletedCalls, "failed_calls": body.FailedCalls,
		"occurred_at": time.Now().UTC()})
	if err := c.store(r, run, "Heartbeat", data); err != nil {
		http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"recorded": true})
}

// store queues one event and waits until its INSERT has committed.
func (c *committer) store(r *http.Request, run uuid.UUID, typ string, data []byte) error {
	v, ok := c.versions.Load(run)
	if !ok {
		return fmt.Errorf("unknown run %s", run)
	}
	row := &thinRow{stream: run, version: v.(*atomic.Int64).Add(1), business: r.PathValue("business"), typ: typ,
		data: data, done: make(chan error, 1)}
	select {
	case c.in <- row:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	return <-row.done
}

// run is the group commit: it takes what is queued (up to thinBatch rows),
// inserts it in one statement and answers; one INSERT is in flight at a time.
func (c *committer) run(ctx context.Context) {
	batch := make([]*thinRow, 0, thinBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case row := <-c.in:
			batch = append(batch[:0], row)
		}
	fill:
		for len(batch) < thinBatch {
			select {
			case row := <-c.in:
				batch = append(batch, row)
			default:
				break fill
			}
		}
		err := c.insert(ctx, batch)
		for _, row := range batch {
			row.done <- err
		}
	}
}

func (c *committer) insert(ctx context.Context, batch []*thinRow) error {
	var sql strings.Builder
	sql.WriteString(`INSERT INTO ` + thinTable + ` (event_id, stream_id, stream_version, business_id, type, schema_version, data, metadata, occurred_at) VALUES `)
	args := make([]any, 0, 6*len(batch))
	for i, row := range batch {
		if i > 0 {
			sql.WriteString(", ")
		}
		n := len(args)
		sql.WriteString("($" + strconv.Itoa(n+1) + ", $" + strconv.Itoa(n+2) + ", $" + strconv.Itoa(n+3) + ", $" +
			strconv.Itoa(n+4) + ", $" + strconv.Itoa(n+5) + ", 1, $" + strconv.Itoa(n+6) + ", '{\"actor\": \"worker\"}', now())")
		args = append(args, uuid.New(), row.stream, row.version, row.business, row.typ, row.data)
	}
	_, err := c.conn.Exec(ctx, sql.String(), args...)
	return err
}

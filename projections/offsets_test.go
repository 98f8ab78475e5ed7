package projections

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
)

// watermillSQL is the module, and watermillSQLVersion the release of it in
// go.mod, that offsets.go and watermill.go were written against and that
// TestOffsetsTableAsWatermillWritesIt pins. An upgrade fails the test until
// someone has read the new release's subscriber and offsets adapter, checked
// the assumptions written at the top of both files, and updated this.
const (
	watermillSQL        = "github.com/ThreeDotsLabs/watermill-sql/v4"
	watermillSQLVersion = "v4.1.2"
)

// A real watermill-sql subscriber, over a real PostgreSQL, consumes the log
// through EventsSchema and OffsetsAdapter and acks every event; what it
// writes in projection_offsets is what our readers of that table
// (readOffset, lagSQL) take it to mean, and what rebuild writes there
// (moveOffset) is where the subscriber resumes. On the way it pins the
// behaviours of the subscriber that watermill.go relies on: each batch is
// one transaction from our Beginner; the messages carry it; the offset write
// is the one ExecContext of a batch, after all its messages were handled;
// an empty read is followed by HandleError(noMsg=true), and nothing is read
// until HandleError returns.
func TestOffsetsTableAsWatermillWritesIt(t *testing.T) {
	if v := moduleVersion(t, watermillSQL); v != watermillSQLVersion {
		t.Fatalf("go.mod has %s %s; this test pins %s: check the assumptions at the top of offsets.go and watermill.go against the new release, then update watermillSQLVersion",
			watermillSQL, v, watermillSQLVersion)
	}
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	rn.Now = func() time.Time { now = now.Add(30 * time.Second); return now } // every heartbeat is stored
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "acme", WorkerID: "w", TotalCalls: 9}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	heartbeat := func(calls int) {
		t.Helper()
		if _, err := rn.Execute(ctx, "acme", run, domain.RecordHeartbeat{CompletedCalls: calls}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	for calls := 1; calls <= 4; calls++ {
		heartbeat(calls)
	}
	logged := logOffsets(t, pool)
	if len(logged) != 5 {
		t.Fatalf("the log holds %d events, want 5", len(logged))
	}

	const group = "offsets-pin"
	c := consume(t, pool, group, len(logged), nil)
	if got := c.positions(); fmt.Sprint(got) != fmt.Sprint(positionsOf(logged)) {
		t.Fatalf("the subscriber delivered %v, want %v", got, positionsOf(logged))
	}

	// What watermill wrote is what our readers read.
	at, err := readOffset(ctx, pool, group)
	if err != nil {
		t.Fatal(err)
	}
	if at != logged[len(logged)-1] {
		t.Errorf("readOffset after the subscriber acked every event: %+v, want the last event's %+v", at, logged[len(logged)-1])
	}
	assertLag(t, pool, group, 0)
	c.release() // HandleError returns: the subscriber may read again
	c.stop()
	c.assertBatches(t, group)
	heartbeat(5)
	assertLag(t, pool, group, 1)

	// What rebuild writes is where the subscriber resumes.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := holdOffset(ctx, tx, group); err != nil {
		t.Fatal(err)
	}
	if err := moveOffset(ctx, tx, group, logged[1]); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	logged = logOffsets(t, pool)
	assertLag(t, pool, group, int64(len(logged)-2))
	again := consume(t, pool, group, len(logged)-2, nil)
	again.release()
	again.stop()
	if got, want := again.positions(), positionsOf(logged[2:]); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after moveOffset to the second event the subscriber delivered %v, want %v", got, want)
	}
}

// watermill.go's behaviour 3: a Commit that fails is not passed on to
// HandleError (the next call has a nil error), and it is logged as an error
// unless it wraps sql.ErrTxDone (a batch cut short by a stop says so). The
// batch's events come again.
func TestWatermillDoesNotPassAFailedCommitToHandleError(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	if _, err := rn.Start(ctx, domain.StartRun{RunID: uuid.New(), BusinessID: "acme", WorkerID: "w", TotalCalls: 9}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		err    error
		logged bool
	}{
		{"a failure", errors.New("connection reset by peer"), true},
		{"a stop", fmt.Errorf("%w: the projector is stopping", stdsql.ErrTxDone), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := consume(t, pool, "commit-"+strings.ReplaceAll(tc.name, " ", "-"), 2, tc.err)
			c.stop()
			if got := c.positions(); len(got) != 2 || got[0] != got[1] {
				t.Errorf("delivered %v: want the event of the batch whose commit failed twice", got)
			}
			c.mu.Lock()
			failed := false
			for _, s := range c.steps {
				switch {
				case s.what == "commit-failed":
					failed = true
				case failed && s.what == "backoff":
					if s.err != nil {
						t.Errorf("HandleError after a failed commit got %v; watermill.go expects nil", s.err)
					}
					failed = false
				}
			}
			c.mu.Unlock()
			logged := c.log.HasError(tc.err)
			if logged != tc.logged {
				t.Errorf("the failed commit (%v) logged as an error: %v, want %v", tc.err, logged, tc.logged)
			}
		})
	}
}

// moduleVersion is the version of module that go.mod requires (test
// binaries carry no dependency versions in their build info).
func moduleVersion(t *testing.T, module string) string {
	t.Helper()
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	t.Fatalf("go.mod does not require %s", module)
	return ""
}

// logOffsets reads every event's offset, in subscriber order.
func logOffsets(t *testing.T, q Querier) []Offset {
	t.Helper()
	rows, err := q.Query(context.Background(), `SELECT transaction_id::text::bigint, position FROM events ORDER BY transaction_id, position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []Offset
	for rows.Next() {
		var o Offset
		if err := rows.Scan(&o.TxID, &o.Position); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func positionsOf(offsets []Offset) []int64 {
	out := make([]int64, len(offsets))
	for i, o := range offsets {
		out[i] = o.Position
	}
	return out
}

func assertLag(t *testing.T, q Querier, group string, want int64) {
	t.Helper()
	var (
		events  int64
		seconds float64
	)
	if err := q.QueryRow(context.Background(), lagSQL(false), group, lagCountCap).Scan(&events, &seconds); err != nil {
		t.Fatal(err)
	}
	if events != want || (want == 0) != (seconds == 0) {
		t.Errorf("lag of %s: %d events, %.3fs; want %d events", group, events, seconds, want)
	}
}

// consumption is a real watermill-sql subscriber of the log, with a
// Beginner and a BackoffManager that record what the subscriber does with
// them, in order.
type consumption struct {
	mu        sync.Mutex
	steps     []step
	delivered []int64
	caughtUp  chan struct{} // closed at the first HandleError(noMsg=true) after every event was delivered
	released  chan struct{} // closing it lets that HandleError return
	once      sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
	// failCommit, if set, is what the first Commit of a batch with events
	// returns (after rolling it back).
	failCommit error
	log        *watermill.CaptureLoggerAdapter
}

// step is one thing the subscriber did: begin, query, handled (a message
// was handed over, with the transaction it carried), exec, commit,
// rollback, backoff (HandleError called) or backoff-returned.
type step struct {
	what  string
	tx    int // which transaction (1 = the first the subscriber began)
	query string
	args  []any
	pos   int64
	noMsg bool
	err   error
}

func (c *consumption) record(s step) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, s)
}

// consume runs a subscriber of group until it has delivered n events and
// then found nothing more (its HandleError is then blocked until release).
// failCommit, if set, fails the first Commit of a batch with events.
func consume(t *testing.T, pool *pgxpool.Pool, group string, n int, failCommit error) *consumption {
	t.Helper()
	c := &consumption{caughtUp: make(chan struct{}), released: make(chan struct{}), done: make(chan struct{}),
		failCommit: failCommit, log: watermill.NewCaptureLogger()}
	sub, err := wsql.NewSubscriber(&recordingBeginner{Beginner: wsql.BeginnerFromPgx(pool), c: c}, wsql.SubscriberConfig{
		ConsumerGroup:  group,
		PollInterval:   10 * time.Millisecond,
		ResendInterval: 10 * time.Millisecond,
		BackoffManager: recordingBackoff{c: c, n: n},
		SchemaAdapter:  EventsSchema{BatchSize: 2},
		OffsetsAdapter: OffsetsAdapter(),
	}, c.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	msgs, err := sub.Subscribe(ctx, Topic)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		defer sub.Close()
		for msg := range msgs {
			tx, _ := wsql.TxFromContext(msg.Context())
			rtx, _ := tx.(*recordingTx)
			pos, _ := positionOf(msg)
			s := step{what: "handled", pos: pos}
			if rtx != nil {
				s.tx = rtx.n
			}
			c.record(s)
			c.mu.Lock()
			c.delivered = append(c.delivered, pos)
			c.mu.Unlock()
			msg.Ack()
		}
	}()
	select {
	case <-c.caughtUp:
	case <-time.After(30 * time.Second):
		t.Fatalf("the subscriber did not deliver %d events and catch up within 30s: %v", n, c.positions())
	}
	return c
}

func (c *consumption) release() { c.once.Do(func() { close(c.released) }) }

func (c *consumption) stop() {
	c.release()
	c.cancel()
	<-c.done
}

func (c *consumption) positions() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.delivered...)
}

// assertBatches checks, in what the subscriber recorded, the behaviours
// watermill.go relies on.
func (c *consumption) assertBatches(t *testing.T, group string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	byTx := map[int][]step{}
	var order []int
	inBackoff := false
	for _, s := range c.steps {
		switch s.what {
		case "backoff":
			inBackoff = true
			continue
		case "backoff-returned":
			inBackoff = false
			continue
		case "begin":
			if inBackoff {
				t.Errorf("transaction %d began while HandleError had not returned: the subscriber's wait is not HandleError's", s.tx)
			}
			order = append(order, s.tx)
		}
		if s.tx == 0 {
			t.Errorf("%s of position %d outside any recorded transaction", s.what, s.pos)
			continue
		}
		byTx[s.tx] = append(byTx[s.tx], s)
	}
	withEvents := 0
	for _, n := range order {
		steps := byTx[n]
		var kinds []string
		for _, s := range steps {
			kinds = append(kinds, s.what)
		}
		seq := strings.Join(kinds, " ")
		handled := strings.Count(seq, "handled")
		switch {
		case n == order[0]:
			// Subscribe's own transaction: the zero offset.
			if seq != "begin exec commit" || !strings.Contains(steps[1].query, "INSERT INTO "+offsetsTable) {
				t.Errorf("the subscription's transaction: %s (%s), want the zero offset's insert", seq, steps[1].query)
			}
		case handled == 0:
			if strings.Contains(seq, "exec") {
				t.Errorf("empty batch %d: %s, want no offset write", n, seq)
			}
		default:
			withEvents++
			want := "begin query" + strings.Repeat(" handled", handled) + " exec commit"
			if seq != want {
				t.Errorf("batch %d: %s, want %s (the offset write is the one ExecContext, after every message)", n, seq, want)
				continue
			}
			for _, s := range steps {
				if s.what == "exec" {
					last := steps[len(steps)-3].pos
					if !strings.Contains(s.query, "offset_acked") || len(s.args) != 3 || fmt.Sprint(s.args[0]) != fmt.Sprint(last) || s.args[2] != group {
						t.Errorf("batch %d's ExecContext is not the offset write of position %d for %s: %s %v", n, last, group, s.query, s.args)
					}
				}
			}
		}
	}
	if withEvents == 0 {
		t.Error("no batch with events was recorded")
	}
}

type recordingBeginner struct {
	wsql.Beginner
	c *consumption
	n int
}

func (b *recordingBeginner) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	tx, err := b.Beginner.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	b.n++
	b.c.record(step{what: "begin", tx: b.n})
	return &recordingTx{Tx: tx, c: b.c, n: b.n}, nil
}

type recordingTx struct {
	wsql.Tx
	c       *consumption
	n       int
	written bool // a batch's offset was written
}

func (tx *recordingTx) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	tx.c.record(step{what: "query", tx: tx.n, query: query, args: args})
	return tx.Tx.QueryContext(ctx, query, args...)
}

func (tx *recordingTx) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	tx.c.record(step{what: "exec", tx: tx.n, query: query, args: args})
	tx.written = tx.n > 1 // the first is Subscribe's, writing the zero offset
	return tx.Tx.ExecContext(ctx, query, args...)
}

func (tx *recordingTx) Commit() error {
	tx.c.mu.Lock()
	fail := tx.c.failCommit
	if tx.written {
		tx.c.failCommit = nil
	}
	tx.c.mu.Unlock()
	if fail != nil && tx.written {
		tx.c.record(step{what: "commit-failed", tx: tx.n})
		_ = tx.Tx.Rollback()
		return fail
	}
	tx.c.record(step{what: "commit", tx: tx.n})
	return tx.Tx.Commit()
}

func (tx *recordingTx) Rollback() error {
	tx.c.record(step{what: "rollback", tx: tx.n})
	return tx.Tx.Rollback()
}

// recordingBackoff waits PollInterval-free: a caught-up read is retried at
// once, except the first after n events were delivered, which blocks until
// the test releases it.
type recordingBackoff struct {
	c *consumption
	n int
}

func (b recordingBackoff) HandleError(_ watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	b.c.record(step{what: "backoff", noMsg: noMsg, err: err})
	defer b.c.record(step{what: "backoff-returned"})
	if err != nil {
		return 10 * time.Millisecond
	}
	b.c.mu.Lock()
	caughtUp := noMsg && len(b.c.delivered) >= b.n
	b.c.mu.Unlock()
	if caughtUp {
		select {
		case <-b.c.caughtUp:
		default:
			close(b.c.caughtUp)
			<-b.c.released
		}
	}
	return time.Millisecond
}

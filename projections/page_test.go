package projections

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/runs"
)

// A read-model group's read reaches its handler as one message (behaviour
// 6 of watermill.go): watermill-sql hands the Rows our batch's QueryContext
// returned to EventsSchema.UnmarshalMessage, which makes one message of the
// page. The message carries the page's last position and transaction (what
// the ack writes), and the batch the page's events in log order.
func TestAReadIsDeliveredAsOnePage(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	rn := runs.NewRunner(eventstore.New(pool), domain.DefaultPolicy())
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	rn.Now = func() time.Time { now = now.Add(30 * time.Second); return now } // every heartbeat is stored
	run := uuid.New()
	if _, err := rn.Start(ctx, domain.StartRun{RunID: run, BusinessID: "acme", WorkerID: "w", TotalCalls: 9}, eventstore.Metadata{Actor: "worker:w"}); err != nil {
		t.Fatal(err)
	}
	for calls := 1; calls <= 4; calls++ {
		if _, err := rn.Execute(ctx, "acme", run, domain.RecordHeartbeat{CompletedCalls: calls}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	proj, err := byName(Runs)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{BatchSize: 3, Logger: quietTestLogger()}
	opts.setDefaults()
	g := newGroup(proj, beginnerFromPgx(pool), opts)
	g.stop = make(chan struct{})
	sub, err := newSubscriber(g, Runs, 10*time.Millisecond, g, EventsSchema{BatchSize: opts.BatchSize}, "", opts.Logger)
	if err != nil {
		t.Fatal(err)
	}
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, err := sub.Subscribe(subCtx, Topic)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var positions []int64
	for _, want := range []int{3, 2} { // five events, pages of at most three
		var msg *message.Message
		select {
		case msg = <-msgs:
		case <-time.After(10 * time.Second):
			t.Fatal("no page delivered within 10s")
		}
		if got := msg.Metadata.Get(metaEvents); got != strconv.Itoa(want) {
			t.Fatalf("a page of %d events says %q events", want, got)
		}
		if err := g.handle(msg); err != nil {
			t.Fatal(err)
		}
		b := batchOf(t, msg)
		if len(b.delivered) != want {
			t.Fatalf("the batch applied %d events of a page of %d", len(b.delivered), want)
		}
		if last, _ := positionOf(msg); last != b.delivered[len(b.delivered)-1] {
			t.Fatalf("the message's position %d is not its page's last event's %d", last, b.delivered[len(b.delivered)-1])
		}
		if err := g.handle(msg); err != nil || len(b.delivered) != want {
			t.Fatalf("a page delivered again applied its events again: %d delivered, err %v", len(b.delivered), err)
		}
		positions = append(positions, b.delivered...)
		msg.Ack()
	}
	for i := 1; i < len(positions); i++ {
		if positions[i] <= positions[i-1] {
			t.Fatalf("events applied out of log order: %v", positions)
		}
	}
	waitOffset(t, pool, Runs, positions[len(positions)-1])
}

// positionOf reads the log position a message carries.
func positionOf(msg *message.Message) (int64, error) {
	return strconv.ParseInt(msg.Metadata.Get(metaPosition), 10, 64)
}

func quietTestLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// batchOf is the batch a delivered message carries.
func batchOf(t *testing.T, msg *message.Message) *batch {
	t.Helper()
	tx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		t.Fatal("message has no subscriber transaction")
	}
	b, ok := tx.(*batch)
	if !ok {
		t.Fatalf("the subscriber transaction is a %T, not a batch", tx)
	}
	return b
}

// waitOffset waits until group's committed offset is at position.
func waitOffset(t *testing.T, pool *pgxpool.Pool, group string, position int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		off, err := readOffset(context.Background(), pool, group)
		if err != nil {
			t.Fatal(err)
		}
		if off.Position == position {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's offset is at %d, want %d", group, off.Position, position)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package feed_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/feed"
	"github.com/runledger/runledger/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// offsets is a test's OffsetReader: the committed offsets it is told,
// counting the reads.
type offsets struct {
	mu    sync.Mutex
	by    map[string]eventstore.Offset
	reads atomic.Int64
}

func (o *offsets) set(group string, off eventstore.Offset) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.by[group] = off
}

func (o *offsets) read(context.Context, feed.Querier) (map[string]eventstore.Offset, error) {
	o.reads.Add(1)
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]eventstore.Offset{}
	for g, off := range o.by {
		out[g] = off
	}
	return out, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The Listener hands each channel's notifications to its topic: other
// replicas' batches reach the feed (its own are skipped), appends wake the
// projector; after its connection is killed it reconnects and every topic
// resyncs (the offsets are re-read, the projector woken).
func TestListenerTopicsReconnectAndResync(t *testing.T) {
	pool := pgtest.NewDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	committed := &offsets{by: map[string]eventstore.Offset{"runs": {TxID: 1, Position: 1}}}
	f := feed.New[string](committed.read)
	metrics := feed.NewMetrics(prometheus.NewRegistry())
	var wakes sync.Map // position → true
	appName := fmt.Sprintf("feed-test-%d", time.Now().UnixNano())
	l := &feed.Listener{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics,
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			cfg := pool.Config().ConnConfig.Copy()
			cfg.RuntimeParams["application_name"] = appName
			return pgx.ConnectConfig(ctx, cfg)
		}}
	l.Handle(feed.ChangesChannel, feed.ChangesTopic(f, "me", metrics))
	l.Handle(feed.AppendsChannel, feed.AppendsTopic(func(pos int64) { wakes.Store(pos, true) }))
	ran := make(chan error, 1)
	go func() { ran <- l.Run(ctx) }()
	woken := func(pos int64) bool { _, ok := wakes.Load(pos); return ok }
	waitFor(t, "the first resync", func() bool { return committed.reads.Load() == 1 && woken(0) })
	if got := f.Offset("runs"); got != (eventstore.Offset{TxID: 1, Position: 1}) {
		t.Fatalf("after the first resync runs is at %+v", got)
	}

	sub := f.Subscribe("runs", "acme")
	defer sub.Close()
	notify := func(channel, payload string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
			t.Fatal(err)
		}
	}
	own := feed.Change[string]{Group: "active", Offset: eventstore.Offset{TxID: 9, Position: 9}, Businesses: map[string]int64{"acme": 9}}
	for _, p := range feed.EncodeChange("me", own) {
		notify(feed.ChangesChannel, p)
	}
	theirs := feed.Change[string]{Group: "runs", Offset: eventstore.Offset{TxID: 2, Position: 7}, MaxPosition: 7, Businesses: map[string]int64{"acme": 7}}
	for _, p := range feed.EncodeChange("them", theirs) {
		notify(feed.ChangesChannel, p)
	}
	notify(feed.AppendsChannel, "42")
	select {
	case <-sub.C():
	case <-time.After(20 * time.Second):
		t.Fatal("another replica's batch did not reach the subscriber")
	}
	if _, mustRead := sub.Take(); !mustRead {
		t.Fatal("a batch learnt by NOTIFY (no rows) did not make the subscriber read")
	}
	if got := f.Offset("active"); got != (eventstore.Offset{}) {
		t.Fatalf("this replica's own notification was published: active at %+v", got)
	}
	waitFor(t, "the append's wake-up", func() bool { return woken(42) })

	// Kill the listening connection: it comes back and resyncs.
	committed.set("runs", eventstore.Offset{TxID: 3, Position: 10})
	wakes.Delete(int64(0))
	var killed bool
	if err := pool.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
		WHERE application_name = $1`, appName).Scan(&killed); err != nil || !killed {
		t.Fatalf("kill the listener: %v %v", killed, err)
	}
	waitFor(t, "the resync after the reconnect", func() bool { return committed.reads.Load() >= 2 && woken(0) })
	waitFor(t, "the re-read offset", func() bool { return f.Offset("runs") == eventstore.Offset{TxID: 3, Position: 10} })
	if n := testutil.ToFloat64(metrics.Resyncs); n < 2 {
		t.Fatalf("%v resyncs counted after a connect and a reconnect", n)
	}
	if n := testutil.ToFloat64(metrics.Notifications.WithLabelValues(feed.AppendsChannel)); n != 1 {
		t.Fatalf("%v appends notifications counted, want 1", n)
	}
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run returned %v when its context ended", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}

// A Listener given no topic cannot do its job: Run says so at once.
func TestListenerWithoutTopicsFails(t *testing.T) {
	l := &feed.Listener{Connect: func(context.Context) (*pgx.Conn, error) { return nil, fmt.Errorf("unused") }}
	if err := l.Run(context.Background()); err == nil {
		t.Fatal("Run with no topic returned nil")
	}
}

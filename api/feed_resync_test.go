package api_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
)

// queryCounter counts the statements a pool sends.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// countingPool is a second pool on the database of pool whose statements are counted.
func countingPool(t testing.TB, pool *pgxpool.Pool) (*pgxpool.Pool, *queryCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	q := &queryCounter{}
	cfg.ConnConfig.Tracer = q
	cfg.MaxConns = 20
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, q
}

// Reads with ?after= that time out on a lagging read model ask the database
// whether the feed missed something; that must not make every stream on the
// replica read its run again. 2,000 streams over 500 businesses; 20 reads
// time out at once: the reads pool sees a number of statements bounded by
// the reads (their own), not by the streams.
func TestTimedOutReadsDoNotResyncEveryStream(t *testing.T) {
	var reads *queryCounter
	e := newEnvWith(t, func(c *api.Config) {
		c.Pool, reads = countingPool(t, c.Pool)
		c.ConsistencyWait = 200 * time.Millisecond
		c.MaxStreams = 3000
		c.StreamKeepAlive = time.Hour // 2,000 streams' keep-alives every 50 ms would be the test's whole load
	})
	const businesses, perBusiness = 500, 4
	ctx := context.Background()
	began := time.Now()
	for i := range businesses {
		cmd := domain.StartRun{RunID: uuid.Must(uuid.NewV7()), BusinessID: "s" + strconv.Itoa(i), WorkerID: "w", TotalCalls: 5}
		if _, err := e.runner.Start(ctx, cmd, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	e.caughtUp()
	t.Logf("%d runs started after %s", businesses, time.Since(began).Round(time.Millisecond))

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1, MaxConnsPerHost: 0}}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		bodies []*http.Response
	)
	sem := make(chan struct{}, 64)
	for i := range businesses {
		b := "s" + strconv.Itoa(i)
		token := e.token(b, api.RoleUser)
		for range perBusiness {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				req, _ := http.NewRequest("GET", e.url+"/v1/businesses/"+b+"/runs/active/stream", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				res, err := client.Do(req)
				if err != nil || res.StatusCode != 200 {
					t.Errorf("stream of %s: %v %v", b, res, err)
					return
				}
				line := bufio.NewReader(res.Body)
				for { // the first run event has arrived: the stream follows the feed
					l, err := line.ReadString('\n')
					if err != nil {
						t.Errorf("stream of %s: %v", b, err)
						return
					}
					if l == "event: run\n" {
						break
					}
				}
				mu.Lock()
				bodies = append(bodies, res)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, res := range bodies {
			res.Body.Close()
		}
	})
	if len(bodies) != businesses*perBusiness {
		t.Fatalf("%d streams open", len(bodies))
	}

	t.Logf("%d streams open after %s", len(bodies), time.Since(began).Round(time.Millisecond))
	e.stopProjector() // the read models lag from here on
	id, err := e.runner.Store.OpenRun(ctx, "s0")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	hb := e.must(e.do("POST", fmt.Sprintf("/v1/businesses/s0/runs/%s/heartbeat", id.ID), e.token("s0", api.RoleWorker),
		map[string]any{"completed_calls": 1, "failed_calls": 0}), 200, "")
	after := "?after=" + hb.header.Get("Runledger-Position")

	const timedOut = 20
	before := reads.n.Load()
	var rw sync.WaitGroup
	statuses := make([]int, timedOut)
	for i := range timedOut {
		rw.Add(1)
		go func() {
			defer rw.Done()
			statuses[i] = e.do("GET", "/v1/businesses/s0/runs/active"+after, e.token("s0", api.RoleUser), nil).status
		}()
	}
	rw.Wait()
	for _, s := range statuses {
		if s != http.StatusServiceUnavailable {
			t.Fatalf("a read of a lagging model answered %d (all: %v)", s, statuses)
		}
	}
	time.Sleep(500 * time.Millisecond) // the streams' reads, if any, happen now
	used := reads.n.Load() - before
	t.Logf("%d timed-out reads cost the reads pool %d statements with %d streams open", timedOut, used, len(bodies))
	if used > 3*timedOut+10 {
		t.Fatalf("%d timed-out reads cost the reads pool %d statements: the streams re-read (%d open)", timedOut, used, len(bodies))
	}
}

package main

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// b10: one client's heartbeat latency with group commit on, against the same
// with --append-batch-max 1, in the same run (rounds alternate, and each
// side goes first in half of them, so drift hits both alike).
func (b *bench) b10(ctx context.Context) error {
	on, off, err := b.twoServers(ctx, "bench_b10", []string{"RUNLEDGER_HEARTBEAT_MIN_INTERVAL=0s"},
		[]string{"RUNLEDGER_HEARTBEAT_MIN_INTERVAL=0s", "RUNLEDGER_APPEND_BATCH_MAX=1"})
	if err != nil {
		return err
	}
	defer on.stop()
	defer off.stop()
	runOn, err := b.startHTTPRuns(on, "b10-on-", 1, 1)
	if err != nil {
		return err
	}
	runOff, err := b.startHTTPRuns(off, "b10-off-", 1, 1)
	if err != nil {
		return err
	}
	var latOn, latOff []time.Duration
	type side struct {
		srv *served
		run *httpRun
		out *[]time.Duration
	}
	rounds, per := 8, b.sizes.B10Heartbeats/8
	for r := 0; r < rounds; r++ {
		order := []side{{on, runOn[0], &latOn}, {off, runOff[0], &latOff}}
		if r%2 == 1 { // each side goes first in half the rounds
			order[0], order[1] = order[1], order[0]
		}
		for _, c := range order {
			for i := 0; i < per; i++ {
				n := c.run.calls.Add(1)
				t := time.Now()
				status, err := call("POST", c.srv.url+"/v1/businesses/"+c.run.business+"/runs/"+c.run.id+"/heartbeat", c.run.worker,
					map[string]any{"completed_calls": n, "failed_calls": 0}, nil)
				if err != nil || status != 200 {
					return fmt.Errorf("heartbeat: %d %v", status, err)
				}
				if r > 1 || i >= 50 { // the first rounds' first 50 warm the connections
					*c.out = append(*c.out, time.Since(t))
				}
			}
		}
	}
	sortDurations(latOn)
	sortDurations(latOff)
	for _, q := range []float64{50, 99} {
		v, base := ms(percentile(latOn, q)), ms(percentile(latOff, q))
		b.report.add(Result{ID: "B10", Figure: fmt.Sprintf("one client's heartbeat latency p%.0f, group commit on", q), Value: v, Unit: "ms",
			Baseline: "ms with --append-batch-max 1", BaselineValue: base, Target: "ratio ≤ 1.1", Pass: v/base <= 1.1,
			Notes: map[bool]string{true: fmt.Sprintf("%d heartbeats each, one client, stored every time (coalescing off), %d alternating rounds against two serve processes", len(latOn), rounds)}[q == 50]})
	}
	return nil
}

// twoServers starts two serve processes, each on a fresh database, with the
// given extra environments.
func (b *bench) twoServers(ctx context.Context, name string, envA, envB []string) (*served, *served, error) {
	var out [2]*served
	for i, env := range [][]string{envA, envB} {
		url, pool, err := b.database(ctx, name+"_"+strconv.Itoa(i))
		if err != nil {
			return nil, nil, err
		}
		pool.Close()
		if out[i], err = startServe(ctx, b.bin, url, env...); err != nil {
			if out[0] != nil {
				out[0].stop()
			}
			return nil, nil, err
		}
	}
	return out[0], out[1], nil
}

// b3idle: a single append on an idle server to its visibility in the read
// model, as a client sees it: the heartbeat's answer, then GET …/runs/{r}
// ?after=<its position>, which answers once the runs read model has applied
// it (a wake-up, not a poll).
func (b *bench) b3idle(ctx context.Context) error {
	url, pool, err := b.database(ctx, "bench_b3idle")
	if err != nil {
		return err
	}
	pool.Close()
	srv, err := startServe(ctx, b.bin, url, "RUNLEDGER_HEARTBEAT_MIN_INTERVAL=0s")
	if err != nil {
		return err
	}
	defer srv.stop()
	runs, err := b.startHTTPRuns(srv, "b3idle-", 1, 1)
	if err != nil {
		return err
	}
	r := runs[0]
	var lags []time.Duration
	for i := 0; i < b.sizes.B3IdleAppends; i++ {
		time.Sleep(20 * time.Millisecond) // idle between appends: each finds the projector caught up and asleep
		n := r.calls.Add(1)
		var hb struct {
			Position int64 `json:"position"`
		}
		status, err := call("POST", srv.url+"/v1/businesses/"+r.business+"/runs/"+r.id+"/heartbeat", r.worker,
			map[string]any{"completed_calls": n, "failed_calls": 0}, &hb)
		if err != nil || status != 200 {
			return fmt.Errorf("heartbeat: %d %v", status, err)
		}
		answered := time.Now()
		status, err = call("GET", srv.url+"/v1/businesses/"+r.business+"/runs/"+r.id+"?after="+strconv.FormatInt(hb.Position, 10), r.user, nil, nil)
		if err != nil || status != 200 {
			return fmt.Errorf("read after %d: %d %v", hb.Position, status, err)
		}
		lags = append(lags, time.Since(answered))
	}
	sortDurations(lags)
	p50, p99 := percentile(lags, 50), percentile(lags, 99)
	notes := fmt.Sprintf("%d appends, 20 ms apart, on an otherwise idle server: from the heartbeat's answer to the answer of GET …/runs/{r}?after=<its position> (includes that request's own round trip)", len(lags))
	b.report.add(Result{ID: "B3-idle", Figure: "append to read-model visibility p50, idle server", Value: ms(p50), Unit: "ms", Target: "≤ 5 ms", Pass: ms(p50) <= 5, Notes: notes})
	b.report.add(Result{ID: "B3-idle", Figure: "append to read-model visibility p99, idle server", Value: ms(p99), Unit: "ms", Target: "≤ 20 ms", Pass: ms(p99) <= 20})
	return nil
}

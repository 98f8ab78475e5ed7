package api

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/runledger/runledger/projections"
)

// /metrics and /readyz need no token, so anyone who can reach the port can
// call them as often as they like: they answer from an observation of the
// database taken at most once per observeEvery per replica, however many
// scrapers ask. The projections' lag comes from the LagMonitor when there is
// one (serve runs it anyway); the open runs are one query on the reads pool.
const observeEvery = time.Second

// lagMonitorStale is how old the LagMonitor's last measurement may be before
// /readyz says the database does not answer.
const lagMonitorStale = 3 * time.Second

// observation is what /metrics and /readyz report of the database.
type observation struct {
	// openErr is the open runs' query's error; active … overdue are valid without it.
	openErr         error
	active, stalled int
	// oldestSilence is the longest silence of an open run; overdue the
	// longest time an open run is past its own stale_at (0 when none is).
	oldestSilence, overdue time.Duration

	// lagErr is why the lag is unknown (the database did not answer).
	lagErr error
	lags   []projections.Lag
}

// observer keeps the latest observation and refreshes it once it is
// observeEvery old, one refresh at a time (the others wait for it).
type observer struct {
	s *Server

	mu      sync.Mutex
	taken   time.Time // local time the observation began; zero before the first
	last    observation
	running chan struct{} // closed when the refresh in flight ends
}

// get returns an observation at most observeEvery old (or ctx's error while
// waiting for one).
func (o *observer) get(ctx context.Context) (observation, error) {
	for {
		o.mu.Lock()
		if !o.taken.IsZero() && time.Since(o.taken) < observeEvery {
			ob := o.last
			o.mu.Unlock()
			return ob, nil
		}
		running := o.running
		if running == nil {
			o.running = make(chan struct{})
			o.mu.Unlock()
			o.refresh()
			continue
		}
		o.mu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return observation{}, ctx.Err()
		}
	}
}

// refresh takes a new observation (on its own deadline: it serves every
// request waiting, not only the one that began it).
func (o *observer) refresh() {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ob := o.s.observe(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last, o.taken = ob, began
	close(o.running)
	o.running = nil
}

// observe reads the open runs (one query) and the lag (from the LagMonitor,
// else two queries).
func (s *Server) observe(ctx context.Context) observation {
	var ob observation
	now := s.now()
	if open, err := projections.AllOpenRuns(ctx, s.pool); err != nil {
		ob.openErr = err
	} else {
		for _, r := range open { // the domain's rules, not copies of them in SQL
			if r.Active(now, s.policy.StaleAfter) {
				ob.active++
			}
			if s.policy.Stalled(r.Run, now) {
				ob.stalled++
			}
			ob.oldestSilence = max(ob.oldestSilence, now.Sub(r.LastHeartbeatAt))
			ob.overdue = max(ob.overdue, now.Sub(r.StaleAt(s.policy.StaleAfter)))
		}
	}
	if s.cfg.Lag != nil {
		lags, measured := s.cfg.Lag.Last()
		switch {
		case measured.IsZero():
			ob.lagErr = errors.New("the projections' lag was not measured yet")
		case time.Since(measured) > lagMonitorStale:
			ob.lagErr = errors.New("the projections' lag could not be measured recently")
		default:
			ob.lags = lags
		}
		return ob
	}
	ob.lags, ob.lagErr = projections.Lags(ctx, s.pool, nil)
	return ob
}

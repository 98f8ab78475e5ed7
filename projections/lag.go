package projections

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// Lag is how far a projection is behind the log.
type Lag struct {
	Projection string `json:"projection"`
	// Events is the number of committed events it has not applied (counted
	// up to lagCountCap).
	Events int64 `json:"events_behind"`
	// Seconds is the age, by the database's clock, of the first of them in
	// subscriber order (0 when caught up).
	Seconds float64 `json:"seconds_behind"`
}

// Lags measures each projection (all when names is empty): the committed
// events past its offset (up to lagCountCap), and the age of the first of
// them in subscriber order, which is the oldest the group has not applied.
func Lags(ctx context.Context, q Querier, names []string) ([]Lag, error) {
	if len(names) == 0 {
		names = Names
	}
	out := make([]Lag, 0, len(names))
	for _, name := range names {
		l, err := GroupLag(ctx, q, name, false)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// GroupLag measures one consumer group as Lags does; a group that skips
// heartbeats (ConsumerOptions.SkipHeartbeats) counts the events it reads.
func GroupLag(ctx context.Context, q Querier, group string, skipHeartbeats bool) (Lag, error) {
	l := Lag{Projection: group}
	if err := q.QueryRow(ctx, lagSQL(skipHeartbeats), group, lagCountCap).Scan(&l.Events, &l.Seconds); err != nil {
		return l, fmt.Errorf("lag of %s: %w", group, err)
	}
	return l, nil
}

// LagMonitor measures the projections' lag every interval, so that a read
// can ask "is this read model too far behind to judge from?" without a query
// of its own. A replica's read models can fall behind while another replica
// holds their consumer group, or while the database holds back the log's
// visibility horizon; a read model that is behind must not be taken for the
// truth (a run that is heartbeating would look silent).
type LagMonitor struct {
	q        Querier
	interval time.Duration

	mu       sync.Mutex
	lags     map[string]float64
	last     []Lag
	measured time.Time // local monotonic time of the last successful measurement
}

// NewLagMonitor returns a monitor that measures every interval once Run.
func NewLagMonitor(q Querier, interval time.Duration) *LagMonitor {
	return &LagMonitor{q: q, interval: interval, lags: map[string]float64{}}
}

// Measure measures once.
func (m *LagMonitor) Measure(ctx context.Context) error {
	lags, err := Lags(ctx, m.q, nil)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range lags {
		m.lags[l.Projection] = l.Seconds
	}
	m.last, m.measured = lags, time.Now()
	return nil
}

// Last returns the last successful measurement and when it was made (local
// time; zero before the first), for /metrics and /readyz, which read it
// instead of measuring per request.
func (m *LagMonitor) Last() ([]Lag, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, m.measured
}

// Run measures every interval until ctx ends, then returns nil.
func (m *LagMonitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		_ = m.Measure(ctx) // a failed measurement ages; Behind then says so
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Behind is how far projection was behind the log at the last measurement,
// plus the age of that measurement: a lag nobody could measure recently is
// treated as that old. It is +Inf before the first measurement.
func (m *LagMonitor) Behind(projection string) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.measured.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	age := time.Since(m.measured)
	if age < 2*m.interval {
		age = 0 // a measurement is due; it is not stale yet
	}
	return time.Duration(m.lags[projection]*float64(time.Second)) + age
}

package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runledger/runledger/eventstore"
)

// positionHeader carries the log position a command produced, and
// minPositionHeader the position a read must reflect (like ?after=).
const (
	positionHeader    = "Runledger-Position"
	minPositionHeader = "Runledger-Min-Position"
)

// setPosition puts the log position a command produced (or, for a command
// that appended nothing, the run's last) on its answer.
func setPosition(w http.ResponseWriter, position int64) {
	if position > 0 {
		w.Header().Set(positionHeader, strconv.FormatInt(position, 10))
	}
}

// minPosition reads the position a read must reflect: ?after= or the
// Runledger-Min-Position header (the larger when both), 0 when neither.
func minPosition(r *http.Request) (int64, error) {
	var pos int64
	for _, v := range []string{r.URL.Query().Get("after"), r.Header.Get(minPositionHeader)} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return 0, fieldProblem("after", "must be a log position (a positive integer, as in a command's Runledger-Position)")
		}
		pos = max(pos, n)
	}
	return pos, nil
}

// awaitApplied answers only once every read model the request reads
// (models; none for a read of the log itself) has applied the position the
// request names (read-your-writes): at once if they have, else it waits for
// the change feed to say so, at most ConsistencyWait in all, then 503
// read_model_behind with Retry-After. It never lets a read answer with an
// older state.
func (s *Server) awaitApplied(r *http.Request, models ...string) error {
	pos, err := minPosition(r)
	if err != nil || pos == 0 {
		return err
	}
	models = slices.DeleteFunc(slices.Clone(models), func(m string) bool { return m == "" })
	if len(models) == 0 { // the log itself: a position acknowledged is committed, so visible
		return nil
	}
	ctx := r.Context()
	tx, ok, err := s.log.PositionOffset(ctx, pos)
	if err != nil {
		return err
	}
	if !ok {
		return fieldProblem("after", fmt.Sprintf("the log holds no event at position %d", pos))
	}
	target := eventstore.Offset{TxID: tx, Position: pos}
	behind := s.behind(models, target)
	if behind == "" {
		s.metrics.consistencyWait("immediate", 0)
		return nil
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ConsistencyWait)
	defer cancel()
	for behind != "" {
		if err := s.cfg.Feed.WaitApplied(wctx, behind, target); err != nil {
			break
		}
		behind = s.behind(models, target)
	}
	if behind == "" {
		s.metrics.consistencyWait("waited", time.Since(start))
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The feed may have missed a notification: ask the database, once for
	// every read waiting on this replica (see offsetRefresher).
	if err := s.offsets.refresh(ctx, start); err == nil && s.behind(models, target) == "" {
		s.metrics.consistencyWait("waited", time.Since(start))
		return nil
	}
	s.metrics.consistencyWait("timeout", time.Since(start))
	return retryable(CodeReadModelBehind, fmt.Sprintf("the %s read model has not applied position %d within %s; retry shortly",
		behind, pos, s.cfg.ConsistencyWait), time.Second)
}

// behind is the first of models that has not applied target ("" when all have).
func (s *Server) behind(models []string, target eventstore.Offset) string {
	if s.cfg.Feed == nil {
		return ""
	}
	for _, m := range models {
		if s.cfg.Feed.Offset(m).Before(target) {
			return m
		}
	}
	return ""
}

// consistencyMetrics count the reads that waited for a position.
type consistencyMetrics struct {
	waits *prometheus.HistogramVec
}

func newConsistencyMetrics(reg prometheus.Registerer) consistencyMetrics {
	m := consistencyMetrics{waits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "runledger_consistency_wait_seconds",
		Help:    "Reads given ?after=: how long they waited for their read model, by outcome (immediate, waited, timeout).",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5}}, []string{"outcome"})}
	reg.MustRegister(m.waits)
	return m
}

func (m *Metrics) consistencyWait(outcome string, d time.Duration) {
	m.consistency.waits.WithLabelValues(outcome).Observe(d.Seconds())
}

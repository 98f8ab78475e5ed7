// Package ratelog keeps a burst of identical failures from flooding the log:
// during a database outage thousands of requests fail the same way each
// second, and one line per second per kind, with the count of the lines it
// stands for, says as much.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter writes at most one record per kind per interval; the next record
// written carries "suppressed", the number held back since the last one.
// The zero value is not usable; use New.
type Limiter struct {
	logger   *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	kinds map[string]*kindState
}

type kindState struct {
	last       time.Time
	suppressed int
}

// New returns a Limiter writing to logger at most once per interval per kind.
func New(logger *slog.Logger, interval time.Duration) *Limiter {
	return &Limiter{logger: logger, interval: interval, now: time.Now, kinds: map[string]*kindState{}}
}

// Log writes the record unless one of the same kind was written less than
// an interval ago, in which case it is counted. It reports whether it wrote.
func (l *Limiter) Log(ctx context.Context, level slog.Level, kind, msg string, args ...any) bool {
	l.mu.Lock()
	st := l.kinds[kind]
	if st == nil {
		st = &kindState{}
		l.kinds[kind] = st
	}
	now := l.now()
	if !st.last.IsZero() && now.Sub(st.last) < l.interval {
		st.suppressed++
		l.mu.Unlock()
		return false
	}
	suppressed := st.suppressed
	st.last, st.suppressed = now, 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	l.logger.Log(ctx, level, msg, append(args, "kind", kind)...)
	return true
}

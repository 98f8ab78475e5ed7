package api

import (
	"fmt"
	"sync"
	"time"
)

// readModelFresh returns a 503 read_model_behind problem if the read model
// is further behind the log than the bound: an answer judged from it could
// call a live run silent (its heartbeats not applied yet) or show a bar that
// has ended. Without a lag monitor it says nothing.
func (s *Server) readModelFresh(projection string) error {
	if s.cfg.Lag == nil {
		return nil
	}
	if behind := s.cfg.Lag.Behind(projection); behind > s.cfg.MaxReadLag {
		return retryable(CodeReadModelBehind, fmt.Sprintf("the %s read model is more than %s behind the log; retry shortly",
			projection, s.cfg.MaxReadLag), time.Second)
	}
	return nil
}

// streamLimiter caps the SSE streams a replica keeps open, in all and per token.
type streamLimiter struct {
	mu            sync.Mutex
	max, perToken int
	total         int
	byToken       map[string]int
}

func newStreamLimiter(max, perToken int) *streamLimiter {
	return &streamLimiter{max: max, perToken: perToken, byToken: map[string]int{}}
}

// acquire takes a stream slot for token, or returns a 429 too_many_streams
// problem; release gives the slot back.
func (l *streamLimiter) acquire(token string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.max:
		return nil, retryable(CodeTooManyStreams, fmt.Sprintf("this server has %d streams open, its limit; retry later or elsewhere", l.total), 5*time.Second)
	case l.byToken[token] >= l.perToken:
		return nil, retryable(CodeTooManyStreams, fmt.Sprintf("this token has %d streams open, its limit", l.perToken), 5*time.Second)
	}
	l.total++
	l.byToken[token]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.byToken[token]--; l.byToken[token] == 0 {
				delete(l.byToken, token)
			}
		})
	}, nil
}

// open is the number of streams open.
func (l *streamLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

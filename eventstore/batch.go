package eventstore

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
)

// batchStatementTimeout bounds a batch statement whose callers have no
// deadline of their own.
const batchStatementTimeout = 10 * time.Second

// batcher is the group commit: an append that finds no batch statement in
// flight runs at once, alone (no timer: at low load a batch is one command);
// appends that arrive while statements are in flight queue, and the next
// statement takes them all (up to BatchMax, one command per run). A caller
// that gives up (its context ends) stops waiting, whether or not its append
// was taken, but never cancels the statement: the others in it are not its
// to fail. A taken append may then still commit; the caller's error says it
// does not know, and a retry by event id is idempotent.
type batcher struct {
	store *Store

	mu       sync.Mutex
	queue    []*pending
	inFlight int
}

// pending is a queued append and where its outcome goes.
type pending struct {
	req      *appendReq
	deadline time.Time // the caller's, or zero
	taken    bool
	done     chan batchOutcome
}

// batchOutcome is how one append fared in its batch statement: applied with
// the run's last position, not applied (the caller appends alone to learn
// why), or the statement failed.
type batchOutcome struct {
	applied      bool
	lastPosition int64
	err          error
	// gaveUp: the caller's context ended before the outcome was known.
	gaveUp bool
}

// submit appends req with whatever else is queued and returns its outcome,
// or ctx's error if ctx ends first (the append may still commit if a
// statement took it).
func (b *batcher) submit(ctx context.Context, req *appendReq) batchOutcome {
	p := &pending{req: req, done: make(chan batchOutcome, 1)}
	p.deadline, _ = ctx.Deadline()
	b.mu.Lock()
	b.queue = append(b.queue, p)
	lead := b.inFlight < b.store.opts.MaxInFlight
	var batch []*pending
	if lead {
		b.inFlight++
		batch = b.takeLocked()
	}
	b.mu.Unlock()
	if lead {
		b.run(batch) // the caller runs the first statement itself (its own append is in it unless the queue was full)
		go b.drain()
	}
	select {
	case out := <-p.done:
		return out
	case <-ctx.Done():
	}
	b.mu.Lock()
	if !p.taken {
		b.removeLocked(p)
	}
	b.mu.Unlock()
	return batchOutcome{err: ctx.Err(), gaveUp: true} // a taken append's outcome goes to p.done's buffer, unread
}

// drain runs the statements that the queue still needs, then gives its
// slot back.
func (b *batcher) drain() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.inFlight--
			b.mu.Unlock()
			return
		}
		batch := b.takeLocked()
		b.mu.Unlock()
		b.run(batch)
	}
}

// takeLocked takes up to BatchMax queued appends, at most one per run (a
// second append of a run waits for the next statement).
func (b *batcher) takeLocked() []*pending {
	var (
		batch []*pending
		rest  = b.queue[:0]
		runs  = map[uuid.UUID]bool{}
	)
	for _, p := range b.queue {
		if len(batch) < b.store.opts.BatchMax && !runs[p.req.streamID] {
			runs[p.req.streamID] = true
			p.taken = true
			batch = append(batch, p)
			continue
		}
		rest = append(rest, p)
	}
	clear(b.queue[len(rest):])
	b.queue = rest
	return batch
}

func (b *batcher) removeLocked(p *pending) {
	for i, q := range b.queue {
		if q == p {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			return
		}
	}
}

// run executes one batch statement and tells each caller its outcome.
func (b *batcher) run(batch []*pending) {
	if len(batch) == 0 {
		return
	}
	if b.store.opts.BatchSizes != nil {
		b.store.opts.BatchSizes(len(batch))
	}
	reqs := make([]*appendReq, len(batch))
	for i, p := range batch {
		reqs[i] = p.req
	}
	// The statement ends at its callers' latest deadline (bounded): a caller
	// near its own gives up waiting, never cutting the statement short for
	// the others; only when every caller has given up is nobody left to
	// answer.
	deadline := time.Now().Add(batchStatementTimeout)
	var latest time.Time
	for _, p := range batch {
		if p.deadline.IsZero() {
			latest = deadline
			break
		}
		latest = later(latest, p.deadline)
	}
	deadline = earlier(deadline, latest)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	applied, err := b.store.execAppend(ctx, false, reqs)
	cancel()
	var (
		last   int64
		beyond bool
	)
	for _, p := range batch {
		pos, ok := applied[p.req.streamID]
		last = max(last, pos)
		beyond = beyond || (err == nil && ok && p.req.beyondHeartbeats())
		p.done <- batchOutcome{applied: err == nil && ok, lastPosition: pos, err: err}
	}
	if err == nil && last > 0 {
		b.store.committed(last, beyond)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/feed"
)

// batch is one subscriber transaction of a consumer group, start to end (its
// wsql.Tx methods, and the subscriber behaviours they rely on, are in
// watermill.go):
// watermill-sql begins it (group.BeginTx) and reads the next events in it,
// which the batch decodes as its page (page.go); watermill hands the page to
// the group's handler as one message, and the handler applies each event to
// the batch's row set (deferred writes); when watermill writes the group's offset, the batch
// first flushes its writes, so the read model and the offset commit together;
// then it commits or rolls back as one.
//
// An event that fails is handled here too. A failure that leaves the
// transaction usable (a gap, an undecodable event) is retried and then
// recorded as poison in the same transaction. A failed statement aborts the
// transaction: the batch fails, its ack is refused so watermill rolls it
// back, and, unless the failure was the database's availability, the group
// remembers its events as suspects, which the next delivery applies one at a
// time, each in its own savepoint, so the one that fails every time is found,
// recorded as poison, and skipped.
//
// watermill-sql finishes its transaction when its context ends, without
// waiting for a handler still writing through it; the mutex makes the finish
// wait for the handler's statement, and a handler that comes too late finds
// the batch done.
type batch struct {
	g     *group
	mu    sync.Mutex
	inner *pgxTx
	tx    pgx.Tx
	rows  *rowSet
	done  bool  // committed or rolled back
	err   error // set when the batch must roll back
	// began is when (readSeq) the batch began.
	began uint64
	// page is what the batch's read found (QueryContext).
	page *page
	// delivered are the positions of the events handed to this batch.
	delivered []int64
	// written are the rows flushed, for the cache and the change feed.
	written []committedRow
	// acked is set once its offset (and so its writes and notifications)
	// is written.
	acked bool
	// last is the offset of the last event handed to this batch; moved maps
	// each business it touched to the highest position applied for it.
	last  Offset
	moved map[string]int64
}

// errBatchDone is returned to a handler whose batch was already committed or
// rolled back (the subscriber stopped waiting for it).
var errBatchDone = errors.New("subscriber transaction already finished")

func (b *batch) flushLocked(ctx context.Context) error {
	if b.err != nil {
		return b.err
	}
	written, err := b.rows.flush(ctx, b.tx)
	if err != nil {
		b.err = err
		return err
	}
	b.written = append(b.written, written...)
	return nil
}

// stopping reports whether err ended the batch because the projector is
// stopping: its stop was asked for, or the subscriber's context (which only
// a stop cancels) was cancelled.
func (b *batch) stopping(err error) bool {
	select {
	case <-b.g.stop:
		return true
	default:
		return errors.Is(err, context.Canceled)
	}
}

// change is what this batch moved, for the feed.
func (b *batch) change() feed.Change[RunRow] { return b.changeOf(b.written) }

// changeOf is what this batch moved, with written the rows it wrote.
func (b *batch) changeOf(written []committedRow) feed.Change[RunRow] {
	c := feed.Change[RunRow]{Group: b.g.proj.name, Offset: b.last, Businesses: b.moved}
	for _, pos := range b.delivered {
		c.MaxPosition = max(c.MaxPosition, pos)
	}
	if b.g.proj.name == Runs {
		for _, w := range written {
			if w.change.op == put {
				r := w.change.row
				c.Items = append(c.Items, feed.Item[RunRow]{Business: r.BusinessID, Key: r.ID.String(), Version: r.Version, Value: r})
			}
		}
	}
	return c
}

// notifications are what the batch tells the other replicas, in its
// transaction (so only if it commits), with written the rows it wrote.
func (b *batch) notifications(written []committedRow) []string {
	if b.g.opts.NotifyChannel == "" || len(b.delivered) == 0 {
		return nil
	}
	return feed.EncodeChange(b.g.opts.Origin, b.changeOf(written))
}

// ackLocked writes the batch's deferred read-model changes, the group's
// offset (watermill's ack statement) and the notifications to the other
// replicas, in one round trip: three or more before. A failed write (a
// stale view) fails the ack, and watermill then rolls the batch back.
func (b *batch) ackLocked(ctx context.Context, ack string, args []any) (pgconn.CommandTag, error) {
	w := b.rows.writes()
	written := append(append([]committedRow(nil), b.written...), w.rows...)
	notes := b.notifications(written)
	var q pgx.Batch
	w.queue(&q)
	q.Queue(ack, args...)
	for _, payload := range notes {
		q.Queue(`SELECT pg_notify($1, $2)`, b.g.opts.NotifyChannel, payload)
	}
	br := b.tx.SendBatch(ctx, &q)
	err := w.check(br)
	var tag pgconn.CommandTag
	if err == nil {
		if tag, err = br.Exec(); err != nil {
			err = fmt.Errorf("offset: %w", err)
		}
	}
	for i := 0; err == nil && i < len(notes); i++ {
		if _, err = br.Exec(); err != nil {
			err = fmt.Errorf("notify: %w", err)
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return tag, err
	}
	b.written, b.acked = written, true
	return tag, nil
}

// fail makes the batch roll back at its ack with err, unless it failed already.
func (b *batch) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
}

// takeEvent returns the next event of the page that the handler has not
// taken yet.
func (b *batch) takeEvent() (pagedEvent, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.page == nil {
		return pagedEvent{}, false
	}
	return b.page.take()
}

// apply handles one delivered event. It never fails the message: a problem
// either fails the whole batch (rolled back at its ack) or ends with the
// event applied or recorded as poison.
func (b *batch) apply(ctx context.Context, rec eventstore.Recorded, at Offset) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return errBatchDone
	}
	b.last = at
	b.delivered = append(b.delivered, rec.Position)
	if b.moved == nil {
		b.moved = map[string]int64{}
	}
	b.moved[rec.BusinessID] = max(b.moved[rec.BusinessID], rec.Position)
	if b.err != nil {
		return nil // the batch rolls back at its ack; nothing here can commit
	}
	if b.g.isSuspect(rec.Position) {
		b.applyGuarded(ctx, rec)
		return nil
	}
	err := b.applyOne(ctx, rec)
	if err == nil {
		return nil
	}
	if b.aborted() {
		b.err = err
		return nil
	}
	b.retryThenPoison(ctx, rec, err, b.applyOne)
	return nil
}

// applyOne applies rec to the row set (a deferred write); a panic is an error.
func (b *batch) applyOne(ctx context.Context, rec eventstore.Recorded) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic applying event %d: %v", rec.Position, p)
		}
	}()
	_, err = b.rows.apply(ctx, b.tx, rec)
	return err
}

// aborted reports whether a failed statement has aborted the transaction.
func (b *batch) aborted() bool {
	return b.tx.Conn().PgConn().TxStatus() != 'T'
}

// applyGuarded applies a suspect event alone, in a savepoint, writing at
// once; the savepoint undoes a failure, so the event can be retried and, if
// it always fails, recorded as poison in the same transaction.
func (b *batch) applyGuarded(ctx context.Context, rec eventstore.Recorded) {
	if err := b.flushLocked(ctx); err != nil {
		return
	}
	err := b.guarded(ctx, rec)
	if err == nil {
		return
	}
	if _, transient := classify(err); transient || b.aborted() {
		b.err = err
		return
	}
	b.retryThenPoison(ctx, rec, err, b.guarded)
}

func (b *batch) guarded(ctx context.Context, rec eventstore.Recorded) error {
	if _, err := b.tx.Exec(ctx, `SAVEPOINT suspect`); err != nil {
		return err
	}
	written, err := b.applyAndFlush(ctx, rec)
	if err != nil {
		b.rows.discard()
		if _, rbErr := b.tx.Exec(ctx, `ROLLBACK TO SAVEPOINT suspect`); rbErr != nil {
			return errors.Join(err, rbErr)
		}
		return err
	}
	if _, err := b.tx.Exec(ctx, `RELEASE SAVEPOINT suspect`); err != nil {
		return err
	}
	b.written = append(b.written, written...)
	return nil
}

func (b *batch) applyAndFlush(ctx context.Context, rec eventstore.Recorded) ([]committedRow, error) {
	if err := b.applyOne(ctx, rec); err != nil {
		return nil, err
	}
	return b.rows.flush(ctx, b.tx)
}

// retryThenPoison tries attempt again, with a growing pause, up to the
// group's retries, then records rec as poison and moves on. A failure that
// aborts the transaction or that is the database's availability fails the
// batch instead. It is called with b.mu held and lets go of it during each
// pause, so the subscriber can finish the batch meanwhile (its ack deadline,
// a stop) without waiting for every retry; the retries end there.
func (b *batch) retryThenPoison(ctx context.Context, rec eventstore.Recorded, err error, attempt func(context.Context, eventstore.Recorded) error) {
	pause := 10 * time.Millisecond
	for try := 1; try < b.g.opts.MaxRetries; try++ {
		b.mu.Unlock()
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		timer.Stop()
		b.mu.Lock()
		if b.done {
			return // rolled back meanwhile: the event comes again in a new batch
		}
		if ctx.Err() != nil {
			b.err = ctx.Err()
			return
		}
		pause *= 2
		if err = attempt(ctx, rec); err == nil {
			return
		}
		if _, transient := classify(err); transient || b.aborted() {
			b.err = err
			return
		}
	}
	if perr := b.g.recordPoison(ctx, b.tx, rec, err); perr != nil {
		b.err = perr
	}
}

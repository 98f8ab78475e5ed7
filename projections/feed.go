package projections

import (
	"context"
	"fmt"
	"strconv"
	"sync"
)

// Change is what one committed projector batch moved, or a resync: the
// consumer group, its offset after the batch, the highest log position it
// applied, and per business the highest position applied for it.
type Change struct {
	Group       string
	Offset      Offset
	MaxPosition int64
	Businesses  map[string]int64
	// Rows are the runs rows the batch wrote, when the batch was this
	// replica's (a change learnt from another replica carries none: its
	// subscribers read the rows they need).
	Rows []RunRow
	// Resync means changes may have been missed (a notification lost to a
	// reconnect, or too many to send): every subscriber re-reads once.
	Resync bool
}

// Feed is a replica's change hub. The projector publishes each committed
// batch to it (this replica's batches directly, other replicas' through
// LISTEN/NOTIFY), and it tells its subscribers, without a query of their
// own: SSE streams learn which businesses moved (with the rows, when the
// batch was local), and reads that must see a position wait until its read
// model has applied it.
type Feed struct {
	mu      sync.Mutex
	offsets map[string]Offset
	maxPos  map[string]int64
	// changed is closed and replaced on every publish: the wake-up of waiters.
	changed chan struct{}
	subs    map[string]map[*Subscription]struct{}
}

// NewFeed returns an empty Feed.
func NewFeed() *Feed {
	return &Feed{offsets: map[string]Offset{}, maxPos: map[string]int64{}, changed: make(chan struct{}),
		subs: map[string]map[*Subscription]struct{}{}}
}

// Publish records a change and tells whom it concerns. It never blocks on a
// subscriber.
func (f *Feed) Publish(c Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur := f.offsets[c.Group]; cur.Before(c.Offset) {
		f.offsets[c.Group] = c.Offset
	}
	f.maxPos[c.Group] = max(f.maxPos[c.Group], c.MaxPosition)
	close(f.changed)
	f.changed = make(chan struct{})
	if c.Group != Runs { // streams follow the runs read model
		return
	}
	if c.Resync {
		for _, set := range f.subs {
			for s := range set {
				s.post(nil, true)
			}
		}
		return
	}
	rowsOf := map[string][]RunRow{}
	for _, r := range c.Rows {
		rowsOf[r.BusinessID] = append(rowsOf[r.BusinessID], r)
	}
	for business := range c.Businesses {
		for s := range f.subs[business] {
			rows, ok := rowsOf[business]
			s.post(rows, !ok)
		}
	}
}

// Offset is the highest offset of group known to this replica.
func (f *Feed) Offset(group string) Offset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.offsets[group]
}

// MaxApplied is the highest log position group is known to have applied.
func (f *Feed) MaxApplied(group string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxPos[group]
}

// Changed returns a channel closed at the next publish.
func (f *Feed) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// WaitApplied returns once group's offset is at or past target, or ctx's
// error. It wakes on publishes; it never polls.
func (f *Feed) WaitApplied(ctx context.Context, group string, target Offset) error {
	for {
		f.mu.Lock()
		reached := !f.offsets[group].Before(target)
		changed := f.changed
		f.mu.Unlock()
		if reached {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// resyncScan bounds the events Sync reads to learn which businesses moved
// while the feed was not told; past it, every subscriber re-reads.
const resyncScan = 50000

// Sync reads every group's committed offset from the database and publishes
// it: at start, after notifications may have been lost, and when a read
// timed out waiting. A group whose offset did not move past what the feed
// knew tells nobody. When the runs group moved and someone is subscribed,
// one more query (on the events between the two offsets, at most
// resyncScan of them) names the businesses that moved, and only their
// subscribers re-read; a gap larger than that is a resync of every
// subscriber. So a Sync costs at most two queries, whatever the number of
// subscribers.
func (f *Feed) Sync(ctx context.Context, q Querier) error {
	rows, err := q.Query(ctx, `SELECT consumer_group, last_processed_transaction_id::text::bigint, coalesce(offset_acked, 0)
		FROM projection_offsets`)
	if err != nil {
		return fmt.Errorf("read offsets: %w", err)
	}
	defer rows.Close()
	var changes []Change
	for rows.Next() {
		var (
			c  Change
			tx int64
		)
		if err := rows.Scan(&c.Group, &tx, &c.Offset.Position); err != nil {
			return err
		}
		c.Offset.TxID = uint64(tx)
		changes = append(changes, c)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	for _, c := range changes {
		known := f.Offset(c.Group)
		if c.Group == Runs && known.Before(c.Offset) && f.Subscribers() > 0 {
			moved, all, err := movedBusinesses(ctx, q, known, c.Offset)
			if err != nil {
				return err
			}
			c.Businesses, c.Resync = moved, all
		}
		f.Publish(c)
	}
	return nil
}

// movedBusinesses names the businesses with events between two offsets of
// a group (after from, up to to), or reports that there were too many
// events to say.
func movedBusinesses(ctx context.Context, q Querier, from, to Offset) (map[string]int64, bool, error) {
	rows, err := q.Query(ctx, `SELECT business_id, max(position), sum(count(*)) OVER () FROM (
			SELECT business_id, position FROM events
			WHERE (transaction_id, position) > ($1::text::xid8, $2) AND (transaction_id, position) <= ($3::text::xid8, $4)
			ORDER BY transaction_id, position LIMIT $5) e
		GROUP BY business_id`,
		strconv.FormatUint(from.TxID, 10), from.Position, strconv.FormatUint(to.TxID, 10), to.Position, resyncScan+1)
	if err != nil {
		return nil, false, fmt.Errorf("read moved businesses: %w", err)
	}
	defer rows.Close()
	moved := map[string]int64{}
	for rows.Next() {
		var (
			b       string
			pos, of int64
		)
		if err := rows.Scan(&b, &pos, &of); err != nil {
			return nil, false, err
		}
		if of > resyncScan {
			return nil, true, nil
		}
		moved[b] = pos
	}
	return moved, false, rows.Err()
}

// Subscribe follows the changes of one business's runs until Close.
func (f *Feed) Subscribe(business string) *Subscription {
	s := &Subscription{feed: f, business: business, signal: make(chan struct{}, 1), rows: map[string]RunRow{}}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs[business] == nil {
		f.subs[business] = map[*Subscription]struct{}{}
	}
	f.subs[business][s] = struct{}{}
	return s
}

// Subscribers is the number of open subscriptions.
func (f *Feed) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, set := range f.subs {
		n += len(set)
	}
	return n
}

// Subscription is one business's changes, coalesced: however many batches
// moved it since the subscriber last looked, it takes the newest row of each
// run, and whether it must read (a change without rows, or a resync).
type Subscription struct {
	feed     *Feed
	business string
	signal   chan struct{}

	mu       sync.Mutex
	rows     map[string]RunRow
	mustRead bool
}

// C is signalled when something arrived; then call Take.
func (s *Subscription) C() <-chan struct{} { return s.signal }

// Take returns the rows that arrived (newest of each run) and whether the
// subscriber must read the read model itself, and empties the mailbox.
func (s *Subscription) Take() (rows []RunRow, mustRead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rows {
		rows = append(rows, r)
	}
	clear(s.rows)
	mustRead, s.mustRead = s.mustRead, false
	return rows, mustRead
}

// Close ends the subscription; it frees it at once.
func (s *Subscription) Close() {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	if set := s.feed.subs[s.business]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(s.feed.subs, s.business)
		}
	}
}

func (s *Subscription) post(rows []RunRow, mustRead bool) {
	s.mu.Lock()
	for _, r := range rows {
		if cur, ok := s.rows[r.ID.String()]; !ok || cur.Version < r.Version {
			s.rows[r.ID.String()] = r
		}
	}
	s.mustRead = s.mustRead || mustRead
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default: // already signalled; Take gets everything
	}
}

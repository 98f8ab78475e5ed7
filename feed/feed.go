package feed

import (
	"context"
	"sync"

	"github.com/runledger/runledger/eventstore"
)

// Change is what one committed projector batch moved, or a resync: the
// consumer group, its offset after the batch, the highest log position it
// applied, and per business the highest position applied for it.
type Change[P any] struct {
	Group       string
	Offset      eventstore.Offset
	MaxPosition int64
	Businesses  map[string]int64
	// Items are what the batch wrote, when the batch was this replica's (a
	// change learnt from another replica carries none: its subscribers read
	// what they need).
	Items []Item[P]
	// Resync means changes may have been missed (a notification lost to a
	// reconnect, or too many to send): every subscriber of the group
	// re-reads once.
	Resync bool
}

// Item is one thing a batch wrote, for the subscribers of its business. The
// feed never looks inside Value: Key names it, and a subscriber's mailbox
// keeps the highest Version of each Key.
type Item[P any] struct {
	Business string
	Key      string
	Version  int64
	Value    P
}

// Feed is a replica's change hub. The projector publishes each committed
// batch to it (this replica's batches directly, other replicas' through the
// Listener), and it tells its subscribers, without a query of their own:
// SSE streams learn which businesses moved (with the items, when the batch
// was local), and reads that must see a position wait until its read model
// has applied it. P is the items' type, which only the publisher and the
// subscribers know.
type Feed[P any] struct {
	readOffsets OffsetReader

	mu      sync.Mutex
	offsets map[string]eventstore.Offset
	maxPos  map[string]int64
	// changed is closed and replaced on every publish: the wake-up of waiters.
	changed chan struct{}
	subs    map[topic]map[*Subscription[P]]struct{}
}

// topic is what a subscription follows: one business in one group.
type topic struct{ group, business string }

// New returns an empty Feed whose Sync reads the committed offsets with
// readOffsets.
func New[P any](readOffsets OffsetReader) *Feed[P] {
	return &Feed[P]{readOffsets: readOffsets, offsets: map[string]eventstore.Offset{}, maxPos: map[string]int64{},
		changed: make(chan struct{}), subs: map[topic]map[*Subscription[P]]struct{}{}}
}

// Publish records a change and tells whom it concerns. It never blocks on a
// subscriber.
func (f *Feed[P]) Publish(c Change[P]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur := f.offsets[c.Group]; cur.Before(c.Offset) {
		f.offsets[c.Group] = c.Offset
	}
	f.maxPos[c.Group] = max(f.maxPos[c.Group], c.MaxPosition)
	close(f.changed)
	f.changed = make(chan struct{})
	if c.Resync {
		for t, set := range f.subs {
			if t.group != c.Group {
				continue
			}
			for s := range set {
				s.post(nil, true)
			}
		}
		return
	}
	itemsOf := map[string][]Item[P]{}
	for _, it := range c.Items {
		itemsOf[it.Business] = append(itemsOf[it.Business], it)
	}
	for business := range c.Businesses {
		for s := range f.subs[topic{c.Group, business}] {
			items, ok := itemsOf[business]
			s.post(items, !ok)
		}
	}
}

// Offset is the highest offset of group known to this replica.
func (f *Feed[P]) Offset(group string) eventstore.Offset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.offsets[group]
}

// MaxApplied is the highest log position group is known to have applied.
func (f *Feed[P]) MaxApplied(group string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxPos[group]
}

// Changed returns a channel closed at the next publish.
func (f *Feed[P]) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// WaitApplied returns once group's offset is at or past target, or ctx's
// error. It wakes on publishes; it never polls.
func (f *Feed[P]) WaitApplied(ctx context.Context, group string, target eventstore.Offset) error {
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

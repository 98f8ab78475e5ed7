package feed

import (
	"context"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/runledger/runledger/eventstore"
)

// Querier is what a resync reads through: a pool, or the Listener's own
// connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// OffsetReader reads every consumer group's committed offset. The feed does
// not know where the consumer groups keep them (projections does: see
// projections.ReadOffsets); it is given the reader.
type OffsetReader func(ctx context.Context, q Querier) (map[string]eventstore.Offset, error)

// resyncScan bounds the events Sync reads to learn which businesses moved
// while the feed was not told; past it, every subscriber re-reads.
const resyncScan = 50000

// Sync reads every group's committed offset from the database and publishes
// it: at start, after notifications may have been lost, and when a read
// timed out waiting. A group whose offset did not move past what the feed
// knew tells nobody. When a followed group moved, one more query (on the
// events between the two offsets, at most resyncScan of them) names the
// businesses that moved, and only their subscribers re-read; a gap larger
// than that is a resync of every subscriber of the group. So a Sync costs
// one query, and one more per followed group that moved, whatever the number
// of subscribers.
func (f *Feed[P]) Sync(ctx context.Context, q Querier) error {
	if f.readOffsets == nil {
		return errors.New("the feed has no offset reader")
	}
	offsets, err := f.readOffsets(ctx, q)
	if err != nil {
		return err
	}
	groups := make([]string, 0, len(offsets))
	for g := range offsets {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for _, g := range groups {
		c := Change[P]{Group: g, Offset: offsets[g]}
		known := f.Offset(g)
		if known.Before(c.Offset) && f.subscribed(g) {
			moved, all, err := eventstore.BusinessesMoved(ctx, q, known, c.Offset, resyncScan)
			if err != nil {
				return err
			}
			c.Businesses, c.Resync = moved, all
		}
		f.Publish(c)
	}
	return nil
}

// Package feed is a replica's change feed: how far each consumer group has
// applied the log, and which businesses each committed batch moved.
//
// It owns the hub (Feed: Publish, per-business Subscriptions that coalesce,
// WaitApplied for read-your-writes), the LISTEN/NOTIFY Listener whose
// Topics carry other replicas' news (ChangesChannel: their batches, chunked
// by EncodeChange; AppendsChannel: their appends) with reconnect, and the
// resync (Sync) after a reconnect or an overflow. The items a batch carries
// are a type parameter: the feed never looks inside them.
//
// It holds no SQL of its own: the committed offsets come through an
// OffsetReader it is given (projections.ReadOffsets, which knows
// watermill-sql's table), the moved businesses from eventstore.
//
// It may import eventstore and domain; it must never import projections,
// api or watermill (projections publishes to it, api subscribes to it).
package feed

// Package projections builds the read models the API serves (runs and
// active_runs) from the log, and owns all read-model SQL.
//
// The events table is a watermill topic: a watermill-sql subscriber reads it
// through EventsSchema, in (transaction_id, position) order and only below
// the oldest running transaction, so no event is skipped when transactions
// commit out of order. Each projection is a consumer group whose offset lives
// in projection_offsets; handlers write through the subscriber's transaction,
// so a read-model change and its offset commit together, and they are
// idempotent (guarded by stream version) for good measure.
//
// Rebuild and Verify do not go through the per-message path: they stream the
// log once, fold it in memory with domain.Evolve, and COPY the result.
package projections

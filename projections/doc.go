// Package projections is the read side's runtime over watermill-sql and the
// read models the API serves (runs and active_runs): it owns all read-model
// SQL, the consumer groups that keep them, rebuild, verify and lag.
//
// The events table is a watermill topic: a watermill-sql subscriber reads it
// through EventsSchema, in (transaction_id, position) order and only below
// the oldest running transaction, so no event is skipped when transactions
// commit out of order. Each projection is a consumer group (Projector) whose
// handlers write through the subscriber's transaction, so a read-model
// change and its offset commit together, and they are idempotent (guarded
// by stream version) for good measure. Consumer runs a consumer group whose
// handler is not a read model (the webhooks' deliveries) on the same
// machinery; a group may skip heartbeats (ConsumerOptions.SkipHeartbeats).
// Projector, Consumer and LagMonitor have one lifecycle: Run(ctx) until ctx
// ends.
//
// Where things are: offsets.go is the only file that reads or writes the
// consumer groups' offsets table (watermill-sql's schema); watermill.go holds
// everything that relies on how watermill-sql's subscriber behaves, with
// those behaviours written down; both are pinned by offsets_test.go against
// the watermill-sql version in go.mod.
//
// Rebuild and Verify do not go through the per-message path: they stream the
// log once, fold it in memory with domain.Evolve, and COPY the result.
//
// It depends on domain and eventstore (and internal helpers); it must never
// import api, webhooks, reaper, runs or cmd, nor anything else above it. No
// package but projections imports watermill or watermill-sql.
package projections

-- +goose Up
-- +goose NO TRANSACTION
-- The log without its heartbeats, in subscriber order, for a consumer group
-- that never acts on a heartbeat (the webhooks'): entered at the group's
-- offset, it finds the next event that matters without reading the
-- heartbeats in between, which are most of the log. The predicate is, word
-- for word, the one the group's read and lag add (projections/offsets.go,
-- skipHeartbeatsSQL), so the planner can use the index.
-- Built concurrently, so appends go on while it builds on a long log; a build
-- that failed leaves an invalid index, which is dropped before trying again.
DROP INDEX CONCURRENTLY IF EXISTS events_except_heartbeats;
CREATE INDEX CONCURRENTLY events_except_heartbeats ON events (transaction_id, position) WHERE type <> 'Heartbeat';

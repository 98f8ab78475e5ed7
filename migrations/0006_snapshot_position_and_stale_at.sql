-- +goose Up
-- Each run's snapshot records the position of its last event (a command
-- that appends nothing answers with it: a read must have applied it to show
-- that answer) and the instant it goes silent past its own TTL (the reaper's
-- candidates, through the partial index). Both are written by every append;
-- runs open before this migration get stale_at from the 15-minute default
-- TTL until their next append recomputes it with the run's policy.
ALTER TABLE run_snapshots ADD COLUMN last_position bigint NOT NULL DEFAULT 0;
ALTER TABLE run_snapshots ADD COLUMN stale_at timestamptz;
UPDATE run_snapshots s SET
    last_position = coalesce((SELECT max(position) FROM events e WHERE e.stream_id = s.run_id), 0),
    stale_at = s.last_heartbeat_at + interval '15 minutes';
ALTER TABLE run_snapshots ALTER COLUMN stale_at SET NOT NULL;
CREATE INDEX run_snapshots_open_stale_at ON run_snapshots (stale_at) WHERE NOT ended;

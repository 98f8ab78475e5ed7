-- +goose Up
-- The read models carry pause, stall and the run's own policy. Stall is
-- judged at read time from last_progress_at (like active from
-- last_heartbeat_at), so the rows stay a pure fold of the log. A NULL
-- stale_after / stall_after is a run started before runs recorded their
-- policy: the service's configured value applies.
ALTER TABLE runs
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    ADD COLUMN paused_at timestamptz,
    ADD COLUMN pause_reason text,
    ADD COLUMN last_progress_at timestamptz,
    ADD COLUMN stale_after interval,
    ADD COLUMN stall_after interval;
ALTER TABLE active_runs
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    ADD COLUMN paused_at timestamptz,
    ADD COLUMN pause_reason text,
    ADD COLUMN last_progress_at timestamptz,
    ADD COLUMN stale_after interval,
    ADD COLUMN stall_after interval;

-- Existing rows: the last progress as the fold computes it at the row's
-- version (the start, or the last heartbeat or completion whose completed +
-- failed grew), so that verify stays clean across the upgrade.
CREATE TEMPORARY TABLE progress_at ON COMMIT DROP AS
WITH e AS (
    SELECT stream_id, stream_version, occurred_at, type,
        CASE WHEN type IN ('Heartbeat', 'RunCompleted')
             THEN (data->>'completed_calls')::int + (data->>'failed_calls')::int END AS done
    FROM events
), steps AS (
    SELECT *, type = 'RunStarted' OR done > coalesce(max(done) OVER (PARTITION BY stream_id ORDER BY stream_version
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS progress
    FROM e
)
SELECT stream_id, stream_version,
    max(occurred_at) FILTER (WHERE progress) OVER (PARTITION BY stream_id ORDER BY stream_version) AS at
FROM steps;
CREATE INDEX ON progress_at (stream_id, stream_version);
UPDATE runs r SET last_progress_at = p.at FROM progress_at p WHERE p.stream_id = r.run_id AND p.stream_version = r.version;
UPDATE active_runs a SET last_progress_at = p.at FROM progress_at p WHERE p.stream_id = a.run_id AND p.stream_version = a.version;

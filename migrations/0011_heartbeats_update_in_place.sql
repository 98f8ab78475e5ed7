-- +goose Up
-- +goose NO TRANSACTION
-- Every stored heartbeat moves run_snapshots.stale_at and
-- active_runs.last_heartbeat_at. While an index held either column, no
-- heartbeat's update of those rows could be HOT: each wrote a new index entry
-- in every index of the table (and left a dead one for vacuum). Without these
-- two indexes a heartbeat changes no indexed column of either table, so its
-- updates stay on their page (fillfactor 70 leaves the room).
--
-- Their readers do not need them: open runs are few, and both tables reach
-- them without the moving column. The reaper's queries (eventstore SilentRuns,
-- NextStaleAt, OldestOpenHeartbeat) scan the open snapshots through
-- run_snapshots_one_open_per_business (business_id) WHERE NOT ended and sort
-- or take the minimum of their stale_at: O(open runs), however many runs have
-- ended. The open-runs list (projections.ListOpenRuns) sorts active_runs,
-- which holds only open runs, at read time.
-- Dropped concurrently, so appends and reads go on while it waits.
DROP INDEX CONCURRENTLY IF EXISTS run_snapshots_open_stale_at;
DROP INDEX CONCURRENTLY IF EXISTS active_runs_by_silence;

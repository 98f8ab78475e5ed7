-- +goose Up
-- The operators' list of open runs (GET /v1/runs/open): every business's open
-- run, longest silence first, paged by a keyset cursor. business_id is
-- active_runs' primary key, so (last_heartbeat_at, business_id) orders rows
-- totally. A stored heartbeat changes last_heartbeat_at, so it now updates
-- this index too (no HOT update on active_runs): one small index entry per
-- stored heartbeat, on a table of at most one row per business.
CREATE INDEX active_runs_by_silence ON active_runs (last_heartbeat_at, business_id);

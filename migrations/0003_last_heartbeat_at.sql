-- +goose Up
-- One name for a run's last sign of life (start or stored heartbeat): the
-- contract's last_heartbeat_at, in the read models, the JSON and now the
-- write-side snapshots too (column and the state's JSON key).
ALTER TABLE run_snapshots RENAME COLUMN last_activity_at TO last_heartbeat_at;
UPDATE run_snapshots
SET state = convert_to(((convert_from(state, 'UTF8')::jsonb - 'last_activity_at')
        || jsonb_build_object('last_heartbeat_at', convert_from(state, 'UTF8')::jsonb -> 'last_activity_at'))::text, 'UTF8')
WHERE convert_from(state, 'UTF8')::jsonb ? 'last_activity_at';

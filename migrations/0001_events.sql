-- +goose Up
-- The log: one append-only table. It is also the watermill topic that the
-- projections subscribe to (see projections/schema.go).
CREATE TABLE events (
    position        bigserial   PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       uuid        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    business_id     text        NOT NULL,
    type            text        NOT NULL,
    schema_version  int         NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

-- The subscriber reads in (transaction_id, position) order below the oldest
-- running transaction, so an event is never skipped when transactions commit
-- out of order.
CREATE INDEX events_transaction_position ON events (transaction_id, position);

-- Audit: one business's events in a time range, in order.
CREATE INDEX events_business_occurred ON events (business_id, occurred_at, position);

-- The log is append-only: refuse UPDATE, DELETE and TRUNCATE.
-- +goose StatementBegin
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
-- +goose StatementEnd
CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- Write-side state of each run, updated in the same statement as every
-- append, so a command costs the same on a stream of 10 or 10,000 events.
-- The partial unique index is the one-open-run-per-business invariant: two
-- concurrent starts cannot both commit an open run for one business.
CREATE TABLE run_snapshots (
    run_id            uuid        PRIMARY KEY,
    business_id       text        NOT NULL,
    version           bigint      NOT NULL,
    ended             boolean     NOT NULL,
    last_activity_at  timestamptz NOT NULL,
    state             bytea       NOT NULL  -- JSON of domain.Run; only the service reads it, so the database need not parse it
) WITH (fillfactor = 70); -- room for HOT updates: heartbeats change no indexed column

CREATE UNIQUE INDEX run_snapshots_one_open_per_business ON run_snapshots (business_id) WHERE NOT ended;

-- Replay: the business's last run started at or before an instant.
CREATE INDEX events_business_starts ON events (business_id, occurred_at DESC, position DESC) WHERE type = 'RunStarted';

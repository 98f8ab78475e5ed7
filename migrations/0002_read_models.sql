-- +goose Up
-- Read models built by the projections from the log.

-- Every run with its current or final state: run lookups and lists.
CREATE TABLE runs (
    run_id             uuid        PRIMARY KEY,
    business_id        text        NOT NULL,
    worker_id          text        NOT NULL,
    status             text        NOT NULL,
    cancel_requested   boolean     NOT NULL,
    cancel_forced      boolean     NOT NULL,
    cancel_reason      text,
    total_calls        int         NOT NULL,
    completed_calls    int         NOT NULL,
    failed_calls       int         NOT NULL,
    abandoned_calls    int         NOT NULL,
    started_at         timestamptz NOT NULL,
    last_heartbeat_at  timestamptz NOT NULL,
    ended_at           timestamptz,
    end_reason         text,
    last_error         text,
    version            bigint      NOT NULL,
    last_position      bigint      NOT NULL
) WITH (fillfactor = 80);
-- Newest-first lists with a keyset cursor; no index on columns a heartbeat changes.
CREATE INDEX runs_business_started ON runs (business_id, started_at DESC, run_id DESC);

-- At most one row per business: the run that is not ended (liveness is
-- judged at read time with the TTL).
CREATE TABLE active_runs (LIKE runs INCLUDING DEFAULTS) WITH (fillfactor = 70);
ALTER TABLE active_runs ADD PRIMARY KEY (business_id);

-- Consumer-group offsets of the watermill subscriber, one row per projection.
CREATE TABLE projection_offsets (
    consumer_group                 varchar(255) PRIMARY KEY,
    offset_acked                   bigint,
    last_processed_transaction_id  xid8 NOT NULL
);

-- Messages a projection could not apply after its retries: recorded and skipped
-- so one bad event cannot block its consumer group forever.
CREATE TABLE projection_poison (
    consumer_group  text        NOT NULL,
    position        bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    error           text        NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, position)
);

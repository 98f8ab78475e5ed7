-- +goose Up
-- Data lifecycle: compaction of ended runs' heartbeats and erasure of a
-- business. The live path stays append-only: the events trigger still refuses
-- UPDATE and TRUNCATE always, and DELETE unless one of the two functions below
-- is deleting (each sets a transaction-local flag around its own DELETE and
-- clears it after). The functions are SECURITY DEFINER with EXECUTE revoked
-- from PUBLIC: a deployment that gives the service its own role grants them
-- only to the operators' role. Both delete keyed by business (and run), never
-- by position alone, and each leaves a record.

-- One row per `runledger compact`: who, when, the cutoff, and the totals,
-- which grow with each batch in the batch's own transaction.
CREATE TABLE compactions (
    id              bigserial   PRIMARY KEY,
    actor           text        NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    ended_before    timestamptz NOT NULL,
    runs            int         NOT NULL DEFAULT 0,
    events_removed  bigint      NOT NULL DEFAULT 0,
    bytes_removed   bigint      NOT NULL DEFAULT 0
);

-- One row per compacted run, written with its deletion: what the audit of a
-- business shows, and how a later compaction skips the run.
CREATE TABLE compacted_runs (
    run_id              uuid        PRIMARY KEY,
    business_id         text        NOT NULL,
    compaction_id       bigint      NOT NULL REFERENCES compactions (id),
    compacted_at        timestamptz NOT NULL DEFAULT now(),
    heartbeats_before   int         NOT NULL,
    heartbeats_removed  int         NOT NULL,
    bytes_removed       bigint      NOT NULL
);
CREATE INDEX compacted_runs_business ON compacted_runs (business_id);

-- One row per erased business: who, when, why and how many rows went. The
-- business id is all it keeps of the business.
CREATE TABLE erasures (
    id           bigserial   PRIMARY KEY,
    business_id  text        NOT NULL,
    actor        text        NOT NULL,
    reason       text        NOT NULL,
    erased_at    timestamptz NOT NULL DEFAULT now(),
    counts       jsonb       NOT NULL
);
CREATE INDEX erasures_business ON erasures (business_id);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('runledger.lifecycle', true) IN ('compact', 'erase') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
-- +goose StatementEnd

-- lifecycle_compact_run removes the given heartbeats of one ended run of one
-- business and records it; anything else (an open run, a position that is not
-- a heartbeat of that run of that business) raises and removes nothing.
-- +goose StatementBegin
CREATE FUNCTION lifecycle_compact_run(p_compaction bigint, p_business text, p_run uuid, p_positions bigint[],
        p_heartbeats_before int, OUT removed bigint, OUT bytes bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM run_snapshots WHERE run_id = p_run AND business_id = p_business AND ended FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % of business % has not ended: not compacted', p_run, p_business
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM set_config('runledger.lifecycle', 'compact', true);
    WITH d AS (
        DELETE FROM events e WHERE e.business_id = p_business AND e.stream_id = p_run
            AND e.type = 'Heartbeat' AND e.position = ANY (p_positions)
        RETURNING pg_column_size(e.*) AS size
    )
    SELECT count(*), coalesce(sum(size), 0) INTO removed, bytes FROM d;
    PERFORM set_config('runledger.lifecycle', '', true);
    IF removed <> cardinality(p_positions) THEN
        RAISE EXCEPTION 'run % of business %: % of % positions are its heartbeats: not compacted',
            p_run, p_business, removed, cardinality(p_positions) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO compacted_runs (run_id, business_id, compaction_id, heartbeats_before, heartbeats_removed, bytes_removed)
    VALUES (p_run, p_business, p_compaction, p_heartbeats_before, removed, bytes)
    ON CONFLICT (run_id) DO UPDATE SET compaction_id = excluded.compaction_id, compacted_at = excluded.compacted_at,
        heartbeats_removed = compacted_runs.heartbeats_removed + excluded.heartbeats_removed,
        bytes_removed = compacted_runs.bytes_removed + excluded.bytes_removed;
    UPDATE compactions SET runs = runs + 1, events_removed = events_removed + removed,
        bytes_removed = bytes_removed + bytes WHERE id = p_compaction;
END $$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION lifecycle_compact_run(bigint, text, uuid, bigint[], int) FROM PUBLIC;

-- lifecycle_erase_business removes every row of one business from every table
-- of this schema with a business_id column (events, snapshots, read models,
-- idempotency keys, compaction records, and any table added later), and its
-- events' poison rows, then records the erasure. It raises, removing nothing,
-- when the business has a run that has not ended, when a rebuild is running
-- (its shadow tables would bring the business back), or when an append for
-- the business commits while it runs. It first touches every consumer
-- group's offset row: a projector batch in flight finishes before it, and one
-- that read the log before it commits fails to serialise and reads again.
-- +goose StatementBegin
CREATE FUNCTION lifecycle_erase_business(p_business text, p_actor text, p_reason text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    counts jsonb := '{}';
    t text;
    n bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(32199620896058468) THEN -- projections' rebuildLockKey ("rebuild")
        RAISE EXCEPTION 'a rebuild is running: erase % after it', p_business USING ERRCODE = 'lock_not_available';
    END IF;
    UPDATE projection_offsets SET offset_acked = offset_acked;
    IF EXISTS (SELECT 1 FROM run_snapshots WHERE business_id = p_business AND NOT ended) THEN
        RAISE EXCEPTION 'business % has an open run: end it first (or --force)', p_business
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM projection_poison p WHERE p.event_id IN (SELECT e.event_id FROM events e WHERE e.business_id = p_business);
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('projection_poison', n);
    PERFORM set_config('runledger.lifecycle', 'erase', true);
    FOR t IN
        SELECT c.table_name FROM information_schema.columns c
        JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
        WHERE c.table_schema = current_schema() AND c.column_name = 'business_id'
            AND tb.table_type = 'BASE TABLE' AND c.table_name <> 'erasures'
        ORDER BY c.table_name
    LOOP
        EXECUTE format('DELETE FROM %I WHERE business_id = $1', t) USING p_business;
        GET DIAGNOSTICS n = ROW_COUNT;
        counts := counts || jsonb_build_object(t, n);
    END LOOP;
    PERFORM set_config('runledger.lifecycle', '', true);
    IF EXISTS (SELECT 1 FROM events WHERE business_id = p_business)
        OR EXISTS (SELECT 1 FROM run_snapshots WHERE business_id = p_business) THEN
        RAISE EXCEPTION 'business % appended while being erased: nothing erased, try again', p_business
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO erasures (business_id, actor, reason, counts) VALUES (p_business, p_actor, p_reason, counts);
    RETURN counts;
END $$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION lifecycle_erase_business(text, text, text) FROM PUBLIC;

-- +goose Up
-- The first answer to each command sent with an Idempotency-Key, so that a
-- retry of the same request gets that answer instead of running again. A key
-- is scoped by business, method and path (the endpoint, run id included).
-- A row is inserted by the request that claims the key and holds the row's
-- lock while the command runs; it is committed only together with its answer
-- (status < 500), so status, header and body are NULL only inside that
-- claiming transaction and never in a committed row.
CREATE TABLE idempotency_keys (
    business_id  text        NOT NULL,
    method       text        NOT NULL,
    path         text        NOT NULL,
    key          text        NOT NULL,
    -- sha256 of method, path and body: the same key with another request is refused.
    request_hash bytea       NOT NULL,
    status       int,
    header       jsonb,
    body         bytea,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (business_id, method, path, key)
);
-- The sweeper deletes expired keys in batches.
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

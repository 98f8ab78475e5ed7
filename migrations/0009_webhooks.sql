-- +goose Up
-- Outbound webhooks (see webhooks/). Endpoints are configuration, written by
-- the API; deliveries are a projection of the log (the "webhooks" consumer
-- group inserts one row per event and subscribed endpoint in the batch that
-- moves its offset, so each is created exactly once); attempts are the
-- sender's record of what it sent and what it got back.
CREATE TABLE webhook_endpoints (
    id                     uuid        PRIMARY KEY,
    business_id            text        NOT NULL,
    url                    text        NOT NULL,
    events                 text[]      NOT NULL,
    description            text        NOT NULL DEFAULT '',
    secret                 text        NOT NULL,
    -- During a rotation window both secrets sign.
    previous_secret        text,
    previous_secret_until  timestamptz,
    disabled               boolean     NOT NULL DEFAULT false,
    disabled_reason        text,
    disabled_at            timestamptz,
    -- The first failure since the last success (5 days of it disables).
    failing_since          timestamptz,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_business ON webhook_endpoints (business_id, created_at, id);

CREATE TABLE webhook_deliveries (
    -- id is the webhook-id (msg_ + its hex), stable across attempts.
    id               uuid        PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    business_id      text        NOT NULL,
    event_id         uuid        NOT NULL,
    position         bigint      NOT NULL,
    event_type       text        NOT NULL,
    -- The exact bytes that are signed and sent.
    payload          text        NOT NULL,
    -- pending, succeeded, failed (retries exhausted or 410)
    status           text        NOT NULL DEFAULT 'pending',
    attempts         int         NOT NULL DEFAULT 0,
    -- When a pending delivery is next due. A sender's claim moves it to the
    -- end of the claim's lease, so a sender that dies (or freezes) leaves
    -- the delivery due again once the lease is over.
    next_attempt_at  timestamptz,
    -- The claim in force; only its holder records the attempt's outcome.
    lease_token      uuid,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_pending_age ON webhook_deliveries (created_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id);

CREATE TABLE webhook_attempts (
    delivery_id   uuid        NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    attempt       int         NOT NULL,
    attempted_at  timestamptz NOT NULL,
    status_code   int,
    duration_ms   bigint      NOT NULL,
    response      text        NOT NULL DEFAULT '',
    error         text        NOT NULL DEFAULT '',
    next_attempt_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);


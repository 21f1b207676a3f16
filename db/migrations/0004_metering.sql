-- Metering: what each running node of a cluster costs per hour, how far it has been charged,
-- when it was down (not charged), and the usage lines each accrual pass writes.

CREATE TABLE usage_records (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    cluster_id      TEXT NOT NULL,
    node_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    provider_org_id TEXT NOT NULL,
    hold_id         TEXT NOT NULL,
    currency        TEXT NOT NULL,
    gpus            BIGINT NOT NULL,
    -- micro-units per hour for the whole node (price per GPU-hour × GPUs)
    rate_per_hour   BIGINT NOT NULL,
    started_at      BIGINT NOT NULL,
    -- NULL while the node runs
    ended_at        BIGINT,
    -- charged up to this instant
    accrued_until   BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX usage_records_due ON usage_records(accrued_until);
CREATE INDEX usage_records_org ON usage_records(org_id, id);

CREATE TABLE node_downtime (
    id         TEXT PRIMARY KEY,
    record_id  TEXT NOT NULL REFERENCES usage_records(id),
    started_at BIGINT NOT NULL,
    ended_at   BIGINT NOT NULL
);
CREATE INDEX node_downtime_record ON node_downtime(record_id);

CREATE TABLE usage_lines (
    id              TEXT PRIMARY KEY,
    record_id       TEXT NOT NULL REFERENCES usage_records(id),
    org_id          TEXT NOT NULL,
    cluster_id      TEXT NOT NULL,
    node_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    provider_org_id TEXT NOT NULL,
    currency        TEXT NOT NULL,
    gpus            BIGINT NOT NULL,
    rate_per_hour   BIGINT NOT NULL,
    period_start    BIGINT NOT NULL,
    period_end      BIGINT NOT NULL,
    -- billable (up) time in the period, microseconds
    billable_micros BIGINT NOT NULL,
    -- captured from the hold
    amount          BIGINT NOT NULL,
    -- what the hold could not cover
    unpaid          BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    UNIQUE (record_id, period_end)
);
CREATE INDEX usage_lines_org ON usage_lines(org_id, period_end);
CREATE INDEX usage_lines_provider ON usage_lines(provider_org_id, period_end);

-- Faster accrual passes.
--
-- * `settled`: a record that ended and is charged to its end. Due records are found through a
--   partial index on the unsettled ones, so `accrued_until` is in no index: moving it (every
--   record, every pass) touches only the row (a HOT update on Postgres).
-- * usage_lines loses its foreign key to usage_records: lines are only ever written joined to
--   their record, and the per-row check was a third of the cost of writing one.

ALTER TABLE usage_records ADD COLUMN settled BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE usage_records SET settled = TRUE WHERE ended_at IS NOT NULL AND accrued_until >= ended_at;
DROP INDEX usage_records_due;
CREATE INDEX usage_records_unsettled ON usage_records(id) WHERE NOT settled;

CREATE TABLE usage_lines_new (
    id              TEXT PRIMARY KEY,
    record_id       TEXT NOT NULL,
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
    created_at      BIGINT NOT NULL
);
INSERT INTO usage_lines_new (id, record_id, org_id, cluster_id, node_id, device_id, provider_org_id, currency, gpus, rate_per_hour,
    period_start, period_end, billable_micros, amount, unpaid, created_at)
SELECT id, record_id, org_id, cluster_id, node_id, device_id, provider_org_id, currency, gpus, rate_per_hour,
    period_start, period_end, billable_micros, amount, unpaid, created_at FROM usage_lines;
DROP TABLE usage_lines;
ALTER TABLE usage_lines_new RENAME TO usage_lines;
CREATE UNIQUE INDEX usage_lines_record_period ON usage_lines(record_id, period_end);
CREATE INDEX usage_lines_org ON usage_lines(org_id, period_end);
CREATE INDEX usage_lines_provider ON usage_lines(provider_org_id, period_end);

-- Usage lines become hourly: one line per node and clock hour (UTC), which each accrual pass
-- adds to in place instead of writing a new line every minute. A pass then writes nothing new
-- except in the first minute of an hour, and the columns it changes are not indexed, so
-- Postgres updates the line where it lies.
--
-- * hour_start: the clock hour the line covers; period_start/period_end stay the stretch of it
--   that has been charged so far.
-- * earned: the provider's share of `amount`, summed from each capture's own split of the fee
--   (the sum of the fee per capture, not the fee of the sum, so earnings match the ledger).
--   Lines written before this migration were single captures; their share is worked out with
--   the default 5% fee, the only fee they can have been charged with.

CREATE TABLE usage_lines_hourly (
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
    hour_start      BIGINT NOT NULL,
    period_start    BIGINT NOT NULL,
    period_end      BIGINT NOT NULL,
    -- billable (up) time in the hour so far, microseconds
    billable_micros BIGINT NOT NULL,
    -- captured from the hold
    amount          BIGINT NOT NULL,
    -- what the hold could not cover
    unpaid          BIGINT NOT NULL,
    -- the provider's share of `amount`
    earned          BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

INSERT INTO usage_lines_hourly (id, record_id, org_id, cluster_id, node_id, device_id, provider_org_id, currency, gpus, rate_per_hour,
    hour_start, period_start, period_end, billable_micros, amount, unpaid, earned, created_at)
SELECT MIN(id), record_id, MIN(org_id), MIN(cluster_id), MIN(node_id), MIN(device_id), MIN(provider_org_id), MIN(currency), MIN(gpus),
    MIN(rate_per_hour), (period_start / 3600000000) * 3600000000, MIN(period_start), MAX(period_end), SUM(billable_micros),
    SUM(amount), SUM(unpaid), SUM(amount - (amount * 500) / 10000), MIN(created_at)
FROM usage_lines GROUP BY record_id, (period_start / 3600000000) * 3600000000;

DROP TABLE usage_lines;
ALTER TABLE usage_lines_hourly RENAME TO usage_lines;
CREATE UNIQUE INDEX usage_lines_record_hour ON usage_lines(record_id, hour_start);
CREATE INDEX usage_lines_org ON usage_lines(org_id, hour_start);
CREATE INDEX usage_lines_provider ON usage_lines(provider_org_id, hour_start);

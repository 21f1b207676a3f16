-- Learned reliability, in basis points (0 to 10,000): an exponentially weighted average of
-- what a device did, and of what all of a provider's devices did. Each scored hour of
-- heartbeats (the share of its minutes heard) and each node that came up or failed moves the
-- score part of the way toward what was seen, so a bad stretch lowers it and good behaviour
-- brings it back. A new device or provider starts at 9,000: trusted, not yet proven.
ALTER TABLE devices ADD COLUMN reliability_bps BIGINT NOT NULL DEFAULT 9000;
-- the last hour (hours since the epoch) scored into reliability_bps
ALTER TABLE devices ADD COLUMN reliability_hour BIGINT NOT NULL DEFAULT 0;

CREATE TABLE provider_reliability (
    org_id          TEXT PRIMARY KEY,
    reliability_bps BIGINT NOT NULL,
    scored_hour     BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

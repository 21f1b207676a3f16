-- What an hour's block needs to know of each device besides the minutes it was heard: when it
-- was first and last heard in the hour, since when it had been heard without a break (as of
-- the last heartbeat of the hour), the longest silence that ended in the hour, and the highest
-- utilisation it reported while idle (no node running on it and every GPU free).
ALTER TABLE device_uptime ADD COLUMN first_at BIGINT;
ALTER TABLE device_uptime ADD COLUMN last_at BIGINT;
ALTER TABLE device_uptime ADD COLUMN heard_since BIGINT;
ALTER TABLE device_uptime ADD COLUMN longest_gap BIGINT NOT NULL DEFAULT 0;
ALTER TABLE device_uptime ADD COLUMN idle_gpu_pct BIGINT;
ALTER TABLE device_uptime ADD COLUMN idle_cpu_pct BIGINT;

CREATE INDEX device_uptime_hour ON device_uptime(hour);

-- Since when the device has been heard without a silence longer than the heartbeat timeout.
ALTER TABLE devices ADD COLUMN heard_since BIGINT;

-- A block reads the status changes of its hour, and the nodes that ran in it.
CREATE INDEX device_events_time ON device_events(created_at);
CREATE INDEX node_assignments_updated ON node_assignments(updated_at);

-- The hourly proof of a listed device that serves no rental: a proof of work sized to its GPU
-- class and its VRAM as the agent measured it, asked for by the agent once an hour (one per
-- device and hour: asking again answers the same challenge) and answered once.
CREATE TABLE device_proofs (
    device_id   TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    org_id      TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    difficulty  BIGINT NOT NULL,
    -- GiB of VRAM per GPU the device's model has (0 for a CPU-only device)
    vram_gib    BIGINT NOT NULL,
    issued_at   BIGINT NOT NULL,
    deadline    BIGINT NOT NULL,
    answered_at BIGINT,
    -- passed, wrong_answer, late, vram_short; NULL while unanswered
    outcome     TEXT,
    -- what was wrong, in words, for the provider (the VRAM measured, how late)
    detail      TEXT,
    PRIMARY KEY (device_id, hour)
);
CREATE INDEX device_proofs_hour ON device_proofs(hour);

-- Each hour's block: its emission, minted into the rewards pool and shared between the GPU
-- and CPU pools in proportion to the eligible devices' scores, in one ledger transaction.
CREATE TABLE reward_blocks (
    -- hours since the Unix epoch
    hour               BIGINT PRIMARY KEY,
    -- the protocol parameters' version the block used
    params_version     BIGINT NOT NULL,
    -- $IO micro-units
    emission           BIGINT NOT NULL,
    gpu_pool           BIGINT NOT NULL,
    cpu_pool           BIGINT NOT NULL,
    gpu_paid           BIGINT NOT NULL,
    cpu_paid           BIGINT NOT NULL,
    gpu_score          BIGINT NOT NULL,
    cpu_score          BIGINT NOT NULL,
    eligible_devices   BIGINT NOT NULL,
    ineligible_devices BIGINT NOT NULL,
    transaction_id     TEXT,
    created_at         BIGINT NOT NULL
);

-- One row per device a block considered: its score and amount, or why it earned nothing.
CREATE TABLE block_rewards (
    hour      BIGINT NOT NULL,
    device_id TEXT NOT NULL,
    org_id    TEXT NOT NULL,
    -- gpu or cpu
    pool      TEXT NOT NULL,
    score     BIGINT NOT NULL,
    -- $IO micro-units
    amount    BIGINT NOT NULL,
    rented    BOOLEAN NOT NULL,
    -- NULL when eligible; else the rule it failed (not_listed, stake_short, not_heard,
    -- short_uptime, no_proof, proof_failed, idle_rule, slashing_case)
    reason    TEXT,
    -- the evidence for the reason, in words with the figures
    evidence  TEXT,
    PRIMARY KEY (hour, device_id)
);
CREATE INDEX block_rewards_device ON block_rewards(device_id, hour);
CREATE INDEX block_rewards_org ON block_rewards(org_id, hour);

-- The keys of node tests: an RSA-style modulus whose factorisation only the control plane
-- knows, so the answer of a test (repeated squarings) is cheap here and sequential work on a
-- node. Made on first use and shared by every replica; `phi` never leaves the database.
CREATE TABLE node_test_keys (
    id         TEXT PRIMARY KEY,
    -- hexadecimal
    modulus    TEXT NOT NULL,
    phi        TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One test per cluster node, handed with its bootstrap; a node turns ready only once its test
-- passed. The row stays as evidence: what was asked, what the agent answered and measured,
-- and what that made of the node.
CREATE TABLE node_tests (
    node_id         TEXT PRIMARY KEY,
    cluster_id      TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    -- the provider organisation
    org_id          TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    seed            TEXT NOT NULL,
    lanes           BIGINT NOT NULL,
    squarings       BIGINT NOT NULL,
    limit_ms        BIGINT NOT NULL,
    -- the node whose link this one measures (its leader), if any
    peer_node_id    TEXT,
    -- when the agent could first see the test (a follower: when its leader was up)
    issued_at       BIGINT NOT NULL,
    answer          TEXT,
    -- as the agent measured them
    elapsed_ms      BIGINT,
    rtt_us          BIGINT,
    bandwidth_mbps  BIGINT,
    -- pending, passed, wrong_answer, too_slow, bandwidth_short
    outcome         TEXT NOT NULL,
    reason          TEXT,
    answered_at     BIGINT
);
CREATE INDEX node_tests_device ON node_tests(device_id, answered_at);

-- Whether a node must pass its test before it may be ready: NULL for nodes without one.
ALTER TABLE node_assignments ADD COLUMN test_outcome TEXT;

-- Round trips measured between regions by node tests, feeding placement's latency model.
-- One row per unordered pair (`region_a` <= `region_b`).
CREATE TABLE region_latency (
    region_a   TEXT NOT NULL,
    region_b   TEXT NOT NULL,
    -- the moving average, µs
    rtt_us     BIGINT NOT NULL,
    samples    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (region_a, region_b)
);
CREATE INDEX region_latency_updated ON region_latency(updated_at);

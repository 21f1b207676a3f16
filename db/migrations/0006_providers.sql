-- The supply side: the GPU and region catalogs, devices registered by providers, their
-- verification challenges, state-change events, uptime, node assignments, and provider stake.

-- GPU models. Prices in USD micro-units per GPU-hour; TFLOPS are dense tensor figures.
CREATE TABLE gpu_models (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    vram_gib           BIGINT NOT NULL,
    fp16_tflops        DOUBLE PRECISION NOT NULL,
    bf16_tflops        DOUBLE PRECISION NOT NULL,
    -- datacenter, workstation or consumer
    class              TEXT NOT NULL,
    staking_multiplier BIGINT NOT NULL,
    price_floor        BIGINT NOT NULL,
    price_ceiling      BIGINT NOT NULL,
    max_per_node       BIGINT NOT NULL
);

INSERT INTO gpu_models (id, name, vram_gib, fp16_tflops, bf16_tflops, class, staking_multiplier, price_floor, price_ceiling, max_per_node) VALUES
    ('h200',         'NVIDIA H200 SXM',      141, 989.5, 989.5, 'datacenter',  10, 1500000, 9000000, 8),
    ('h100-sxm',     'NVIDIA H100 SXM',       80, 989.5, 989.5, 'datacenter',  10, 1200000, 7000000, 8),
    ('h100-pcie',    'NVIDIA H100 PCIe',      80, 756.0, 756.0, 'datacenter',  10, 1000000, 6000000, 8),
    ('a100-80gb',    'NVIDIA A100 80GB',      80, 312.0, 312.0, 'datacenter',   1,  500000, 4000000, 8),
    ('a100-40gb',    'NVIDIA A100 40GB',      40, 312.0, 312.0, 'datacenter',   1,  400000, 3000000, 8),
    ('l40s',         'NVIDIA L40S',           48, 362.1, 362.1, 'datacenter',   1,  400000, 2500000, 8),
    ('a10',          'NVIDIA A10',            24, 125.0, 125.0, 'datacenter',   1,  150000, 1200000, 8),
    ('t4',           'NVIDIA T4',             16,  65.0,  65.0, 'datacenter',   1,   50000,  600000, 8),
    ('rtx-a6000',    'NVIDIA RTX A6000',      48, 154.8, 154.8, 'workstation',  1,  250000, 1800000, 8),
    ('rtx-6000-ada', 'NVIDIA RTX 6000 Ada',   48, 364.2, 364.2, 'workstation',  1,  350000, 2200000, 8),
    ('rtx-4090',     'NVIDIA GeForce RTX 4090', 24, 165.2, 165.2, 'consumer',   1,  150000, 1200000, 8),
    ('rtx-3090',     'NVIDIA GeForce RTX 3090', 24,  71.0,  71.0, 'consumer',   1,  100000,  800000, 8);

-- Regions: a code, a name, the continent and the coordinates of the metro it stands for.
CREATE TABLE regions (
    code      TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    continent TEXT NOT NULL,
    lat       DOUBLE PRECISION NOT NULL,
    lon       DOUBLE PRECISION NOT NULL
);

INSERT INTO regions (code, name, continent, lat, lon) VALUES
    ('us-east',        'US East (Ashburn)',            'north-america',  39.04,  -77.49),
    ('us-central',     'US Central (Council Bluffs)',  'north-america',  41.26,  -95.86),
    ('us-south',       'US South (Dallas)',            'north-america',  32.78,  -96.80),
    ('us-west',        'US West (San Jose)',           'north-america',  37.34, -121.89),
    ('ca-central',     'Canada Central (Montreal)',    'north-america',  45.50,  -73.57),
    ('mx-central',     'Mexico Central (Querétaro)',   'north-america',  20.59, -100.39),
    ('sa-east',        'South America East (São Paulo)', 'south-america', -23.55, -46.63),
    ('sa-west',        'South America West (Santiago)', 'south-america', -33.45, -70.67),
    ('eu-west',        'Europe West (Dublin)',         'europe',         53.35,   -6.26),
    ('uk-south',       'UK South (London)',            'europe',         51.51,   -0.13),
    ('eu-central',     'Europe Central (Frankfurt)',   'europe',         50.11,    8.68),
    ('eu-north',       'Europe North (Stockholm)',     'europe',         59.33,   18.07),
    ('eu-south',       'Europe South (Milan)',         'europe',         45.46,    9.19),
    ('eu-east',        'Europe East (Warsaw)',         'europe',         52.23,   21.01),
    ('me-central',     'Middle East (Dubai)',          'asia',           25.20,   55.27),
    ('ap-south',       'Asia Pacific South (Mumbai)',  'asia',           19.08,   72.88),
    ('ap-southeast',   'Asia Pacific Southeast (Singapore)', 'asia',      1.35,  103.82),
    ('ap-east',        'Asia Pacific East (Hong Kong)', 'asia',          22.32,  114.17),
    ('ap-northeast',   'Asia Pacific Northeast (Tokyo)', 'asia',         35.68,  139.69),
    ('ap-northeast-2', 'Asia Pacific Northeast 2 (Seoul)', 'asia',       37.57,  126.98),
    ('au-east',        'Australia East (Sydney)',      'oceania',       -33.87,  151.21),
    ('nz-north',       'New Zealand North (Auckland)', 'oceania',       -36.85,  174.76),
    ('af-south',       'Africa South (Johannesburg)',  'africa',        -26.20,   28.05),
    ('af-west',        'Africa West (Lagos)',          'africa',          6.52,    3.38);

-- A provider's machine. `gpu_model` is NULL for a CPU-only device (then `gpu_count` is 0).
CREATE TABLE devices (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL,
    name                TEXT NOT NULL,
    gpu_model           TEXT REFERENCES gpu_models(id),
    gpu_count           BIGINT NOT NULL,
    -- GPUs not taken by a node; claimed with conditional updates
    gpus_free           BIGINT NOT NULL,
    cpu_cores           BIGINT NOT NULL,
    ram_gib             BIGINT NOT NULL,
    disk_gib            BIGINT NOT NULL,
    region              TEXT NOT NULL REFERENCES regions(code),
    country             TEXT NOT NULL,
    lat                 DOUBLE PRECISION NOT NULL,
    lon                 DOUBLE PRECISION NOT NULL,
    bandwidth_up_mbps   BIGINT NOT NULL,
    bandwidth_down_mbps BIGINT NOT NULL,
    -- USD micro-units per GPU-hour (per node-hour for a CPU-only device)
    price_per_gpu_hour  BIGINT NOT NULL,
    token_hash          TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    status_reason       TEXT,
    verified_at         BIGINT,
    agent_version       TEXT,
    last_heartbeat_at   BIGINT,
    -- the last minute credited to uptime (minutes since the epoch)
    last_minute         BIGINT NOT NULL DEFAULT 0,
    -- what the agent last said: free GPUs, utilisation, temperature
    reported_free_gpus  BIGINT,
    utilization_pct     BIGINT,
    temperature_c       BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX devices_org ON devices(org_id, id);
CREATE INDEX devices_status ON devices(status, last_heartbeat_at);
CREATE UNIQUE INDEX devices_org_name ON devices(org_id, name) WHERE status <> 'retired';

-- Every status change of a device, for the provider to read.
CREATE TABLE device_events (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX device_events_device ON device_events(device_id, id);

-- The open verification challenge of a device (at most one).
CREATE TABLE device_challenges (
    device_id  TEXT PRIMARY KEY,
    nonce      TEXT NOT NULL,
    difficulty BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    deadline   BIGINT NOT NULL
);

-- Minutes a device was heard from, per hour (hours since the epoch).
CREATE TABLE device_uptime (
    device_id TEXT NOT NULL,
    hour      BIGINT NOT NULL,
    minutes   BIGINT NOT NULL,
    PRIMARY KEY (device_id, hour)
);

-- A node of a cluster placed on a device: what its agent must bring up, and how that went.
CREATE TABLE node_assignments (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    provider_org_id TEXT NOT NULL,
    cluster_id      TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    gpus            BIGINT NOT NULL,
    -- the node bootstrap, JSON
    bootstrap       TEXT NOT NULL,
    -- assigned, starting, ready, failed, released
    status          TEXT NOT NULL,
    reason          TEXT,
    -- JSON object of endpoints once ready
    endpoints       TEXT,
    -- outcomes, for the device's reliability
    ready_at        BIGINT,
    failed_at       BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX node_assignments_device ON node_assignments(device_id, status);
CREATE INDEX node_assignments_cluster ON node_assignments(cluster_id);

-- $IO a provider organisation has staked. The tokens sit in its `stake` ledger account.
CREATE TABLE stakes (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    -- the ledger reference that moved the tokens in (one stake per reference)
    external_ref TEXT NOT NULL UNIQUE,
    -- active, unbonding, withdrawn
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    unbonding_at BIGINT,
    -- when an unbonding stake may be withdrawn
    available_at BIGINT,
    withdrawn_at BIGINT
);
CREATE INDEX stakes_org ON stakes(org_id, status);

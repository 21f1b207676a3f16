-- Clusters: the spec a customer asked for, where it stands, and what happened to it.

CREATE TABLE clusters (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL,
    -- the spec as given (JSON); `generation` counts its changes
    spec               TEXT NOT NULL,
    generation         BIGINT NOT NULL,
    -- bumped by every change of the row; each event carries the version it made
    resource_version   BIGINT NOT NULL,
    -- pending, placing, provisioning, running, degraded, terminating, terminated, failed
    status             TEXT NOT NULL,
    status_reason      TEXT,
    quote_id           TEXT,
    currency           TEXT NOT NULL,
    hold_id            TEXT,
    gpus               BIGINT NOT NULL,
    -- whole cluster, billing currency micro-units per hour
    price_per_hour     BIGINT NOT NULL,
    -- whole cluster, USD micro-units per hour: what the spend quota counts
    spend_per_hour     BIGINT NOT NULL,
    -- the exchange rate locked at creation: micro-USD for one unit of `currency`
    usd_per_unit       BIGINT NOT NULL,
    rate_id            TEXT,
    duration_hours     BIGINT NOT NULL,
    -- connection details once running (JSON)
    connection         TEXT,
    -- the secret nodes join the cluster with (in their bootstraps and the kubeconfig)
    join_token         TEXT NOT NULL,
    provisioning_deadline BIGINT,
    running_at         BIGINT,
    expires_at         BIGINT,
    -- when terminating (or failing) began: usage is settled up to here
    ended_at           BIGINT,
    terminated_at      BIGINT,
    -- the reconciler's next look (NULL: nothing left to do); a replica takes a cluster by
    -- moving it forward, so two never work on one at once
    reconcile_at       BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
-- A name is unique among an organisation's live clusters; once a cluster is ending, its name is
-- free again (so a declarative replace can create the new one at once).
CREATE UNIQUE INDEX clusters_live_name ON clusters(org_id, name) WHERE status NOT IN ('terminating', 'terminated', 'failed');
CREATE INDEX clusters_org ON clusters(org_id, id);
CREATE INDEX clusters_due ON clusters(reconcile_at);

CREATE TABLE cluster_events (
    cluster_id TEXT NOT NULL,
    -- the resource_version the event made
    seq        BIGINT NOT NULL,
    org_id     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    -- the cluster's status after the event
    status     TEXT NOT NULL,
    message    TEXT NOT NULL,
    PRIMARY KEY (cluster_id, seq)
);

-- What each node is for and what it costs; `ended_at` is set when the cluster gives the node
-- up (lost, replaced, terminated), while the agent may still be tearing it down. `waiting`
-- is a status the agent does not see yet (a worker waiting for its head).
ALTER TABLE node_assignments ADD COLUMN role TEXT NOT NULL DEFAULT 'node';
ALTER TABLE node_assignments ADD COLUMN price_per_gpu_hour BIGINT NOT NULL DEFAULT 0;
ALTER TABLE node_assignments ADD COLUMN ended_at BIGINT;

-- Quota per organisation: limits (NULL: the configured default) and what is in use, moved by
-- conditional updates in the same transaction as the reservation they count.
CREATE TABLE org_quotas (
    org_id             TEXT PRIMARY KEY,
    max_gpus           BIGINT,
    max_clusters       BIGINT,
    -- USD micro-units per hour
    max_spend_per_hour BIGINT,
    gpus_in_use        BIGINT NOT NULL DEFAULT 0,
    clusters_in_use    BIGINT NOT NULL DEFAULT 0,
    spend_per_hour     BIGINT NOT NULL DEFAULT 0,
    updated_at         BIGINT NOT NULL
);

-- A cluster's usage records, read when it is settled.
CREATE INDEX usage_records_cluster ON usage_records(cluster_id);

-- Governance: proposals by staked organisations (or operators), votes weighted by the stake
-- each organisation held when the vote opened, and the protocol parameters each executed
-- change made.

-- Every version of the protocol parameters after the launch policy (version 1, the server's
-- settings): the JSON of all of them, the proposal that made it (once), and from when.
CREATE TABLE protocol_params (
    version      BIGINT PRIMARY KEY,
    params       TEXT NOT NULL,
    proposal_id  TEXT NOT NULL UNIQUE,
    effective_at BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE proposals (
    id            TEXT PRIMARY KEY,
    -- the proposing organisation; NULL for an operator's proposal
    org_id        TEXT,
    proposed_by   TEXT NOT NULL,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    -- JSON of the parameters it sets; NULL for a proposal of words only
    change        TEXT,
    -- voting, passed (words only), rejected, queued (timelocked), vetoed, executed
    status        TEXT NOT NULL,
    starts_at     BIGINT NOT NULL,
    ends_at       BIGINT NOT NULL,
    -- all stake at the snapshot, and the rules it is decided by
    total_weight  BIGINT NOT NULL,
    quorum_bps    BIGINT NOT NULL,
    threshold_bps BIGINT NOT NULL,
    -- the tally at the close
    yes_weight    BIGINT NOT NULL DEFAULT 0,
    no_weight     BIGINT NOT NULL DEFAULT 0,
    abstain_weight BIGINT NOT NULL DEFAULT 0,
    closed_at     BIGINT,
    -- the end of the timelock of a passed change
    executes_at   BIGINT,
    veto_reason   TEXT,
    vetoed_by     TEXT,
    executed_at   BIGINT,
    params_version BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX proposals_due ON proposals(status, ends_at);
CREATE INDEX proposals_queued ON proposals(status, executes_at);

-- Each organisation's weight in a proposal: its active stake and its co-stakes when the vote
-- opened. Stake moved during the vote changes nothing here.
CREATE TABLE proposal_weights (
    proposal_id TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    weight      BIGINT NOT NULL,
    PRIMARY KEY (proposal_id, org_id)
);

-- An organisation's vote; voting again replaces it until the close.
CREATE TABLE proposal_votes (
    proposal_id TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    -- yes, no, abstain
    choice      TEXT NOT NULL,
    weight      BIGINT NOT NULL,
    voted_by    TEXT NOT NULL,
    voted_at    BIGINT NOT NULL,
    PRIMARY KEY (proposal_id, org_id)
);

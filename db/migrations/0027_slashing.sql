-- Slashing cases against devices: the rule broken, the evidence, and the $IO taken from the
-- provider's stake and unwithdrawn rewards into its slash escrow at once. The provider may
-- appeal until `appeal_deadline`; an operator decides. Upheld or unanswered, the escrow is
-- burned once the window has ended; overturned, it returns.
CREATE TABLE slashing_cases (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    -- the provider organisation
    org_id          TEXT NOT NULL,
    -- failed_proofs, hardware_mismatch, abandoned_rental, idle_rule, operator
    rule            TEXT NOT NULL,
    -- `detector`, or the operator's user id
    opened_by       TEXT NOT NULL,
    -- what the opener says, in words
    statement       TEXT NOT NULL,
    -- JSON array of references: {"kind": "proof"|"block"|"node"|"heartbeat_hour"|"note", "ref", "summary"}
    evidence        TEXT NOT NULL,
    -- $IO micro-units in escrow, and where they came from
    amount          BIGINT NOT NULL,
    from_stake      BIGINT NOT NULL,
    from_rewards    BIGINT NOT NULL,
    -- open, appealed, upheld, overturned, burned
    status          TEXT NOT NULL,
    appeal_deadline BIGINT NOT NULL,
    appeal          TEXT,
    appealed_at     BIGINT,
    decision_reason TEXT,
    decided_by      TEXT,
    decided_at      BIGINT,
    -- when the escrow was burned or returned
    closed_at       BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX slashing_cases_org ON slashing_cases(org_id, id);
CREATE INDEX slashing_cases_device ON slashing_cases(device_id, created_at);
CREATE INDEX slashing_cases_due ON slashing_cases(status, appeal_deadline);
-- A detector opens at most one case per device and rule at a time.
CREATE UNIQUE INDEX slashing_cases_one_open ON slashing_cases(device_id, rule)
    WHERE status IN ('open', 'appealed', 'upheld') AND opened_by = 'detector';

-- Every step of a case, for the provider and the operators to read.
CREATE TABLE slashing_events (
    id         TEXT PRIMARY KEY,
    case_id    TEXT NOT NULL,
    -- opened, appealed, upheld, overturned, burned, returned
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    text       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX slashing_events_case ON slashing_events(case_id, id);

-- Provider payouts on chain. A payout moves earnings to `payout_pending` when it is asked for,
-- then waits for an operator (above the approval threshold) and for the treasury to hold the
-- tokens; the sender signs the transfer and keeps the signed bytes, the signature and the last
-- block height its blockhash is good for before sending them.
-- status: awaiting_approval | ready | queued | sent | paid | failed | rejected | canceled
CREATE TABLE payouts (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    wallet_id TEXT NOT NULL,
    -- The wallet's address when the payout was asked for: removing the wallet later does not
    -- redirect a payout already on its way.
    address TEXT NOT NULL,
    token TEXT NOT NULL,
    -- The earnings paid out: their currency and micro-units.
    currency TEXT NOT NULL,
    amount BIGINT NOT NULL,
    -- What the wallet receives, in the token's micro-units, and the IO/USD rate it was
    -- converted at (when one was needed).
    token_amount BIGINT NOT NULL,
    rate_id TEXT,
    -- What the payout is worth in micro-USD, for the minimum, the daily limit and approval.
    usd_value BIGINT NOT NULL,
    -- The UTC day (days since 1970) whose limit it counts against.
    day BIGINT NOT NULL,
    reference TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    reason TEXT,
    signature TEXT,
    signed_tx TEXT,
    last_valid_height BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    slot BIGINT,
    transaction_id TEXT,
    requested_by TEXT,
    decided_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    sent_at BIGINT,
    paid_at BIGINT
);
CREATE INDEX payouts_org ON payouts(org_id, created_at);
CREATE INDEX payouts_status ON payouts(status, created_at);

-- Every transfer a payout signed: at most one of them ever lands.
CREATE TABLE payout_attempts (
    payout_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    signature TEXT NOT NULL UNIQUE,
    last_valid_height BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (payout_id, attempt)
);

-- What each provider asked to be paid per UTC day, in micro-USD: raised and checked against
-- the limit in one statement, so two requests at once cannot both slip under it.
CREATE TABLE payout_days (
    org_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    usd_total BIGINT NOT NULL,
    PRIMARY KEY (org_id, day)
);

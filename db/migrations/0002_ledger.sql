-- The double-entry ledger. Amounts are BIGINT micro-units; a posting's amount is signed (it adds
-- to its account's balance); the postings of a transaction sum to zero in each currency.

CREATE TABLE ledger_accounts (
    id             TEXT PRIMARY KEY,
    -- The organisation that owns the account, or 'platform' for the platform's own and the
    -- external (rail) accounts.
    owner          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    currency       TEXT NOT NULL,
    -- Derived from postings, kept here so a conditional update can refuse to overdraw.
    balance        BIGINT NOT NULL DEFAULT 0,
    allow_negative BOOLEAN NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (owner, kind, currency)
);

CREATE TABLE ledger_transactions (
    id           TEXT PRIMARY KEY,
    -- The same reference twice is one transaction.
    external_ref TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    org_id       TEXT,
    memo         TEXT NOT NULL,
    -- A digest of the postings, to tell a retry from a different transaction reusing a reference.
    digest       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX ledger_transactions_org ON ledger_transactions(org_id, id);

CREATE TABLE ledger_postings (
    id             TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES ledger_transactions(id),
    account_id     TEXT NOT NULL REFERENCES ledger_accounts(id),
    owner          TEXT NOT NULL,
    currency       TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX ledger_postings_account ON ledger_postings(account_id, id);
CREATE INDEX ledger_postings_owner ON ledger_postings(owner, id);
CREATE INDEX ledger_postings_transaction ON ledger_postings(transaction_id);

-- A reservation of an organisation's funds for a cluster's expected cost.
CREATE TABLE holds (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    currency   TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    captured   BIGINT NOT NULL DEFAULT 0,
    released   BIGINT NOT NULL DEFAULT 0,
    -- open, or settled once captured + released = amount
    status     TEXT NOT NULL,
    -- What the hold is for (a cluster id).
    reference  TEXT NOT NULL,
    -- The reference that placed it: placing twice with one reference is one hold.
    external_ref TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (captured >= 0 AND released >= 0 AND captured + released <= amount)
);
CREATE INDEX holds_org ON holds(org_id, id);

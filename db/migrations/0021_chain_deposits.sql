-- Deposits on Solana. An intent is a Solana Pay transfer request made for an organisation: a
-- fresh reference key rides in the payment, which is how the watcher finds it and whose it is.
CREATE TABLE deposit_intents (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    -- IOSD | USDC | IO: the token asked for (USDC credits IOSD).
    token TEXT NOT NULL,
    mint TEXT NOT NULL,
    reference TEXT NOT NULL UNIQUE,
    -- Base units of the mint asked for, when the request names an amount.
    amount BIGINT,
    -- Base units received and credited so far (a short payment, several payments).
    received BIGINT NOT NULL DEFAULT 0,
    -- open | paid | expired
    status TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    paid_at BIGINT
);
CREATE INDEX deposit_intents_org ON deposit_intents(org_id, id);
CREATE INDEX deposit_intents_open ON deposit_intents(status, expires_at);

-- Every token transfer the watcher saw, once, by its signature and instruction: credited to
-- an organisation (the ledger's external reference is `solana:<signature>:<instruction>`),
-- or kept for operators: unmatched (no known reference, the wrong mint, a plain transfer),
-- or failed on chain (nothing arrived; kept for support, never credited).
CREATE TABLE chain_deposits (
    -- `cdp_…`: how the API names it (a signature is too long for a page cursor).
    id TEXT NOT NULL UNIQUE,
    signature TEXT NOT NULL,
    instruction BIGINT NOT NULL,
    -- Of our mints, when it is one.
    token TEXT,
    mint TEXT,
    destination TEXT NOT NULL,
    -- Base units that arrived.
    amount BIGINT NOT NULL,
    reference TEXT,
    intent_id TEXT,
    org_id TEXT,
    -- credited | unmatched | assigned | failed
    status TEXT NOT NULL,
    reason TEXT,
    transaction_id TEXT,
    slot BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    assigned_by TEXT,
    PRIMARY KEY (signature, instruction)
);
CREATE INDEX chain_deposits_org ON chain_deposits(org_id, seen_at);
CREATE INDEX chain_deposits_status ON chain_deposits(status, seen_at);

-- How far the watcher has read each address it follows (a treasury token account, an open
-- intent's reference): the newest signature whose transaction it has applied.
CREATE TABLE chain_cursors (
    address TEXT PRIMARY KEY,
    last_signature TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

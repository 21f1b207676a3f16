-- Wallets an organisation proved it holds, for its payouts: it asked for a challenge and
-- signed it with the wallet's key. A challenge is good once, for a few minutes.
CREATE TABLE wallet_challenges (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    address TEXT NOT NULL,
    message TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX wallet_challenges_org ON wallet_challenges(org_id, expires_at);

CREATE TABLE payout_wallets (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    address TEXT NOT NULL,
    label TEXT,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, address)
);

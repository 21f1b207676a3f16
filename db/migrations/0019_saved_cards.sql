-- Cards an organisation saved with Stripe (attached to its customer), by the payment method's
-- id, and the one charged by default (the command line's top-up, auto-reload).
CREATE TABLE saved_cards (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month BIGINT NOT NULL,
    exp_year BIGINT NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE INDEX saved_cards_org ON saved_cards(org_id, created_at);

-- Auto-reload: when the available USD balance falls under `threshold`, one off-session
-- payment of `amount` on the default card, at most one in flight (`in_flight` names its
-- top-up), at most `monthly_cap` a calendar month; it turns itself off after three declines
-- in a row.
CREATE TABLE auto_reloads (
    org_id TEXT PRIMARY KEY,
    enabled BOOLEAN NOT NULL,
    threshold BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    monthly_cap BIGINT NOT NULL,
    declines BIGINT NOT NULL DEFAULT 0,
    in_flight TEXT,
    last_failure TEXT,
    updated_at BIGINT NOT NULL
);

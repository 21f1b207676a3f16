-- Card payments through Stripe. Each organisation has one Stripe customer, made on first
-- need. A top-up is one PaymentIntent: its row is written before Stripe is asked, so a
-- PaymentIntent always names (in its metadata) a top-up that exists. The ledger credit's
-- external reference is the PaymentIntent's id, which is what makes it happen once whichever
-- way the news arrives (the webhook, the answer to a confirmation, the missed-webhook pass).
CREATE TABLE stripe_customers (
    org_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE top_ups (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    -- USD micro-units asked for; `received` is what Stripe says arrived.
    amount BIGINT NOT NULL,
    received BIGINT,
    -- pending | succeeded | failed | canceled
    status TEXT NOT NULL,
    payment_intent_id TEXT UNIQUE,
    payment_method TEXT,
    -- api | auto_reload
    origin TEXT NOT NULL,
    created_by TEXT,
    failure_code TEXT,
    failure_message TEXT,
    transaction_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    succeeded_at BIGINT
);
CREATE INDEX top_ups_org ON top_ups(org_id, created_at);

-- Every webhook event accepted (its signature checked), by Stripe's id: a replay finds its
-- row and changes nothing. Types nobody handles are kept too.
CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    -- The object the event is about (`pi_…`, `dp_…`), when it has one.
    object_id TEXT,
    -- credited | recorded | ignored
    outcome TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- Stripe's time of the event (Unix seconds) and ours of receiving it (micro-units).
    created BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX stripe_events_received ON stripe_events(received_at);

-- Background passes that only one replica at a time should run take a lease by name; a
-- lease not renewed before `expires_at` may be taken over.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

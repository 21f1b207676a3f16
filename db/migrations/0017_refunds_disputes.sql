-- Refunds of unused card credit and disputes of card payments. A top-up keeps how much of it
-- was refunded and how much is disputed: neither part can be refunded again.
ALTER TABLE top_ups ADD COLUMN refunded BIGINT NOT NULL DEFAULT 0;
ALTER TABLE top_ups ADD COLUMN disputed BIGINT NOT NULL DEFAULT 0;

-- A refund asks for an amount; it is split over the organisation's card payments, newest
-- first, one part (one Stripe refund) per payment.
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX refunds_org ON refunds(org_id, id);

CREATE TABLE refund_parts (
    refund_id TEXT NOT NULL,
    top_up_id TEXT NOT NULL,
    payment_intent_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    -- requested (not yet accepted by Stripe) | pending | succeeded | failed
    status TEXT NOT NULL,
    stripe_refund_id TEXT UNIQUE,
    failure_reason TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (refund_id, top_up_id)
);
CREATE INDEX refund_parts_open ON refund_parts(status, updated_at);

-- A dispute (chargeback) of a card payment: what it took from the balance and what it left
-- owing, so that winning it gives back exactly that.
CREATE TABLE disputes (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    top_up_id TEXT NOT NULL,
    payment_intent_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    taken_available BIGINT NOT NULL,
    taken_debt BIGINT NOT NULL,
    -- open | won | lost | closed
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE INDEX disputes_org ON disputes(org_id, id);

-- Low-balance alerts: an organisation names, per currency, the available balance under which
-- it wants to hear. Crossing under it notifies once (`below` set, email queued); rising back
-- over it arms the alert again.
CREATE TABLE balance_alerts (
    org_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    threshold BIGINT NOT NULL,
    below BOOLEAN NOT NULL DEFAULT FALSE,
    notified_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, currency)
);

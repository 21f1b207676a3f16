-- Exchange rates used to price in $IO: every rate the platform used, with where it came from and
-- when it was observed, so any quote or charge can be traced to the rate behind it.
CREATE TABLE fx_rates (
    id          TEXT PRIMARY KEY,
    -- micro-USD for one IO
    usd_per_io  BIGINT NOT NULL,
    source      TEXT NOT NULL,
    observed_at BIGINT NOT NULL
);
CREATE INDEX fx_rates_observed ON fx_rates(observed_at);

-- A price locked for a few minutes: an amount in USD and what it costs in the chosen currency.
CREATE TABLE price_quotes (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    usd_amount  BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    rate_id     TEXT REFERENCES fx_rates(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX price_quotes_org ON price_quotes(org_id, id);

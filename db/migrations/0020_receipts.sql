-- A receipt names the card a top-up was paid with (brand and last four digits, never the
-- number); read from Stripe once, the first time a receipt needs it, and kept.
ALTER TABLE top_ups ADD COLUMN card_brand TEXT;
ALTER TABLE top_ups ADD COLUMN card_last4 TEXT;

-- A top-up paid in the card form whose card is to be kept: saved once its payment succeeds.
ALTER TABLE top_ups ADD COLUMN save_card BOOLEAN NOT NULL DEFAULT FALSE;

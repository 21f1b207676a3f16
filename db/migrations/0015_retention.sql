-- Rows kept only for a while are deleted by age in a background sweep (control::retention);
-- these indexes let every replica find them without reading the whole table.
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
CREATE INDEX price_quotes_expires ON price_quotes(expires_at);
CREATE INDEX placement_quotes_expires ON placement_quotes(expires_at);
CREATE INDEX email_outbox_created ON email_outbox(created_at);

-- A kept answer whose secrets were withheld lists where they were (JSON pointers, as a JSON
-- array), so a replay can tell the client that a field it sees as null held a secret.
ALTER TABLE idempotency_keys ADD COLUMN withheld TEXT;

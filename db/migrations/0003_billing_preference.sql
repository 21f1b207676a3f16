-- How an organisation pays: USD (fiat credit), IOSD or IO; its prepaid balance in that currency
-- is drawn first.
ALTER TABLE organizations ADD COLUMN billing_currency TEXT NOT NULL DEFAULT 'USD';

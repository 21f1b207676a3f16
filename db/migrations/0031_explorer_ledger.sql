-- The $IO that backed the network's devices in each block's hour (providers' active stake and
-- the co-stake behind their devices), so the explorer draws stake over time from the blocks.
ALTER TABLE reward_blocks ADD COLUMN staked BIGINT NOT NULL DEFAULT 0;

-- The explorer's payments ledger reads succeeded card top-ups, credited deposits and paid
-- payouts newest first.
CREATE INDEX top_ups_succeeded ON top_ups(status, succeeded_at);
CREATE INDEX payouts_paid ON payouts(status, paid_at);

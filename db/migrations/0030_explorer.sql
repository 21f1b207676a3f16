-- Each block also keeps the network as its hour saw it, so the explorer reads an hour's
-- figures from one row instead of scanning its devices: devices listed (every device the block
-- judged but `not_listed` ones) and their GPUs, those that served a rental and their GPUs; the
-- ineligible devices by reason, the top earners, and the tallies by model and region (JSON,
-- written with the block).
ALTER TABLE reward_blocks ADD COLUMN listed_devices BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reward_blocks ADD COLUMN listed_gpus BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reward_blocks ADD COLUMN rented_devices BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reward_blocks ADD COLUMN rented_gpus BIGINT NOT NULL DEFAULT 0;
-- {"reason": devices, ...}
ALTER TABLE reward_blocks ADD COLUMN ineligible_by_reason TEXT;
-- [{"device_id", "gpu_model", "region", "amount"}], at most ten, highest first
ALTER TABLE reward_blocks ADD COLUMN top_earners TEXT;
-- [{"key", "devices", "gpus", "rented_gpus"}] by GPU model ("cpu" for CPU-only) and by region
ALTER TABLE reward_blocks ADD COLUMN by_model TEXT;
ALTER TABLE reward_blocks ADD COLUMN by_region TEXT;

-- Blocks written before: their counts from their rows (the JSON tallies stay empty).
UPDATE reward_blocks SET
    listed_devices = (SELECT COUNT(*) FROM block_rewards r WHERE r.hour = reward_blocks.hour
        AND (r.reason IS NULL OR r.reason <> 'not_listed')),
    listed_gpus = (SELECT CAST(COALESCE(SUM(d.gpu_count), 0) AS BIGINT) FROM block_rewards r
        JOIN devices d ON d.id = r.device_id
        WHERE r.hour = reward_blocks.hour AND (r.reason IS NULL OR r.reason <> 'not_listed')),
    rented_devices = (SELECT COUNT(*) FROM block_rewards r WHERE r.hour = reward_blocks.hour AND r.rented),
    rented_gpus = (SELECT CAST(COALESCE(SUM(d.gpu_count), 0) AS BIGINT) FROM block_rewards r
        JOIN devices d ON d.id = r.device_id WHERE r.hour = reward_blocks.hour AND r.rented);

-- The device directory's filters, newest first within them.
CREATE INDEX devices_listed ON devices(status, gpu_model, region, id);

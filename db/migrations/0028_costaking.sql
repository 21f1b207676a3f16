-- Co-staking: a provider offers the stake one of its devices needs to others, for a share of
-- the device's block rewards and a term; one organisation takes it. The co-staker's $IO sits in
-- its own `stake` account and backs the provider's device.
CREATE TABLE costake_offers (
    id               TEXT PRIMARY KEY,
    device_id        TEXT NOT NULL,
    provider_org_id  TEXT NOT NULL,
    -- $IO micro-units offered
    amount           BIGINT NOT NULL,
    -- the co-staker's share of the device's block rewards, basis points (for the whole amount)
    reward_share_bps BIGINT NOT NULL,
    term_days        BIGINT NOT NULL,
    -- open, taken, withdrawn
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX costake_offers_one_live ON costake_offers(device_id) WHERE status IN ('open', 'taken');
CREATE INDEX costake_offers_status ON costake_offers(status, id);
CREATE INDEX costake_offers_provider ON costake_offers(provider_org_id, id);

-- A co-staker's position on an offer (one per offer).
CREATE TABLE costake_positions (
    id               TEXT PRIMARY KEY,
    offer_id         TEXT NOT NULL UNIQUE,
    device_id        TEXT NOT NULL,
    provider_org_id  TEXT NOT NULL,
    costaker_org_id  TEXT NOT NULL,
    -- $IO micro-units staked now (slashing takes from it, an overturned case gives back)
    amount           BIGINT NOT NULL,
    -- the co-staker's share of the device's block rewards, basis points
    reward_share_bps BIGINT NOT NULL,
    -- active, unstaking, withdrawn
    status           TEXT NOT NULL,
    -- no unstaking before this
    term_ends_at     BIGINT NOT NULL,
    -- unstaking: the notice ends (the stake backs the device until then), then the cooldown
    unstake_at       BIGINT,
    available_at     BIGINT,
    withdrawn_at     BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX costake_positions_costaker ON costake_positions(costaker_org_id, id);
CREATE INDEX costake_positions_device ON costake_positions(device_id, status);
CREATE INDEX costake_positions_provider ON costake_positions(provider_org_id, status);

-- A block's co-staker's part of a device's reward.
ALTER TABLE block_rewards ADD COLUMN costaker_org_id TEXT;
ALTER TABLE block_rewards ADD COLUMN costaker_amount BIGINT NOT NULL DEFAULT 0;

-- A case's part taken from the device's co-stake, from whom.
ALTER TABLE slashing_cases ADD COLUMN from_costake BIGINT NOT NULL DEFAULT 0;
ALTER TABLE slashing_cases ADD COLUMN costake_position_id TEXT;
ALTER TABLE slashing_cases ADD COLUMN costaker_org_id TEXT;

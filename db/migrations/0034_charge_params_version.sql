-- Each hourly usage line records the version of the protocol's parameters (the platform fee
-- among them) it was charged under. Parameters change only on the hour, so an hour's line has
-- one version; lines charged before governance existed had the launch parameters, version 1.
ALTER TABLE usage_lines ADD COLUMN params_version BIGINT NOT NULL DEFAULT 1;

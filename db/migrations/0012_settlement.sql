-- A cluster's final settlement reads its hold's usage records together.
CREATE INDEX usage_records_hold ON usage_records(hold_id);

-- An API key acts with no more rights than the user it answers to, checked on every use: its
-- creator, or, for a key made by a key, that key's user. Keys made before this column existed
-- are traced back through `created_by`; a key whose chain reaches no user is left without one
-- and no longer authenticates.
ALTER TABLE api_keys ADD COLUMN maker_user_id TEXT;

WITH RECURSIVE makers(id, user_id) AS (
    SELECT id, created_by FROM api_keys WHERE created_by IN (SELECT id FROM users)
    UNION
    SELECT k.id, m.user_id FROM api_keys k JOIN makers m ON k.created_by = m.id
)
UPDATE api_keys SET maker_user_id = (SELECT user_id FROM makers WHERE makers.id = api_keys.id);

CREATE INDEX api_keys_maker ON api_keys(org_id, maker_user_id);

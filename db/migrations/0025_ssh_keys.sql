-- SSH public keys an organisation registers; its clusters' nodes let them in as root. Each key
-- answers to the user who added it (`created_by`, the user behind an API key when a key added
-- it): nodes get only the keys of users who are still members. A key is held once per
-- organisation (by fingerprint) and its name is unique there too.
CREATE TABLE ssh_keys (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    name        TEXT NOT NULL,
    key_type    TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ssh_keys_org ON ssh_keys(org_id, id);
CREATE UNIQUE INDEX ssh_keys_org_fingerprint ON ssh_keys(org_id, fingerprint);
CREATE UNIQUE INDEX ssh_keys_org_name ON ssh_keys(org_id, name);

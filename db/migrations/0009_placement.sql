-- The placement index of each replica re-reads the devices changed since it last looked.
CREATE INDEX devices_updated ON devices(updated_at);

-- A placement quote: the ranked plans (as the API showed them) and the request, held five
-- minutes for a cluster to cite.
CREATE TABLE placement_quotes (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    request    TEXT NOT NULL,
    quote      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX placement_quotes_org ON placement_quotes(org_id, id);

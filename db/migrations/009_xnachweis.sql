-- XNachweis: evidence requests answered from the register.

-- The access log also accounts for evidence requests (§ 9 IDNrG and the
-- Datenschutzcockpit): the IssuedToken's id, the evidence type and how the
-- request ended. A request by IDNr that found no record (or was refused
-- before the register was asked) is logged too, without a record.
ALTER TABLE register_access_log ALTER COLUMN record_id DROP NOT NULL;
ALTER TABLE register_access_log ADD COLUMN token_id text;
ALTER TABLE register_access_log ADD COLUMN evidence_type text;
ALTER TABLE register_access_log ADD COLUMN result text;

-- IssuedTokens seen, until they expire: a token presented twice within its
-- validity is a replay, unless both came from the same stored message (an
-- XTA request answered again after a crash). Only its id, expiry and source
-- are kept.
CREATE TABLE xnachweis_token (
    tenant_id  text NOT NULL REFERENCES tenant (tenant_id),
    token_id   text NOT NULL,
    expires_at timestamptz NOT NULL,
    source     text NOT NULL DEFAULT '',
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, token_id)
);
CREATE INDEX xnachweis_token_expiry ON xnachweis_token (expires_at);
SELECT parzelle_tenant_table('xnachweis_token', 'SELECT, INSERT, UPDATE, DELETE');

-- Evidence requests per requester and day (Europe/Berlin), for the daily
-- quota: shared by every node of a cluster.
CREATE TABLE xnachweis_quota (
    tenant_id text NOT NULL REFERENCES tenant (tenant_id),
    requester text NOT NULL,
    day       date NOT NULL,
    requests  integer NOT NULL,
    PRIMARY KEY (tenant_id, requester, day)
);
SELECT parzelle_tenant_table('xnachweis_quota', 'SELECT, INSERT, UPDATE, DELETE');

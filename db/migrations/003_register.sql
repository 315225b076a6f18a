-- The register: records with bitemporal versions, encrypted under the
-- tenant's data keys, blind indexes for lookups, the hash-chained audit log,
-- the log of IDNr-based disclosures and idempotency keys of API writes.
-- No column holds personal data in plaintext.

-- Data keys (kind 'data', versioned: the highest version encrypts new
-- writes) and the blind-index key (kind 'index', one version), each wrapped
-- by the tenant's key-encryption key (KEK) from the key provider.
CREATE TABLE register_key (
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    kind        text NOT NULL CHECK (kind IN ('data', 'index')),
    version     integer NOT NULL CHECK (version > 0),
    kek_version integer NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, version)
);
SELECT parzelle_tenant_table('register_key', 'SELECT, INSERT, UPDATE, DELETE');

-- A subject (a person, a business) of one register. The subject key is
-- known only as a blind index; it lives in the encrypted versions.
CREATE TABLE register_record (
    id            uuid PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenant (tenant_id),
    register      text NOT NULL,
    subject_index bytea NOT NULL,
    -- Writes so far: the record's revision, for If-Match.
    revision      integer NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    -- Rows that refer to a record name its tenant too, so that no tenant
    -- can attach a row to (or probe for) another tenant's record.
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX register_record_subject ON register_record (tenant_id, register, subject_index) WHERE deleted_at IS NULL;
SELECT parzelle_tenant_table('register_record', 'SELECT, INSERT, UPDATE');

-- The record's attributes over valid time (valid_from inclusive, valid_to
-- exclusive, from the events' own dates) as known over transaction time
-- (recorded_at inclusive, superseded_at exclusive, when Parzelle applied
-- them). A write supersedes the rows it changes and adds their
-- replacements, so every row is immutable except for superseded_at and its
-- re-encryption. The payload is AES-256-GCM under data key key_version,
-- its additional data binding tenant, register, record and seq.
CREATE TABLE register_version (
    tenant_id     text NOT NULL,
    record_id     uuid NOT NULL,
    seq           integer NOT NULL CHECK (seq > 0),
    revision      integer NOT NULL,
    valid_from    date NOT NULL,
    valid_to      date NOT NULL,
    recorded_at   timestamptz NOT NULL,
    superseded_at timestamptz NOT NULL DEFAULT 'infinity',
    key_version   integer NOT NULL,
    payload       bytea NOT NULL,
    PRIMARY KEY (tenant_id, record_id, seq),
    FOREIGN KEY (tenant_id, record_id) REFERENCES register_record (tenant_id, id),
    CHECK (valid_from < valid_to),
    CHECK (recorded_at < superseded_at)
);
CREATE INDEX register_version_current ON register_version (tenant_id, record_id, valid_from) WHERE superseded_at = 'infinity';
CREATE INDEX register_version_key ON register_version (tenant_id, key_version);
SELECT parzelle_tenant_table('register_version', 'SELECT, INSERT, UPDATE');

-- Blind indexes (keyed HMAC) of the searchable attributes of every version
-- as known now, so a search finds a person by a former name too.
CREATE TABLE register_index (
    tenant_id text NOT NULL,
    register  text NOT NULL,
    kind      text NOT NULL,
    value     bytea NOT NULL,
    record_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, register, kind, value, record_id),
    FOREIGN KEY (tenant_id, record_id) REFERENCES register_record (tenant_id, id)
);
CREATE INDEX register_index_record ON register_index (tenant_id, record_id);
SELECT parzelle_tenant_table('register_index', 'SELECT, INSERT, DELETE');

-- The audit log, one hash chain per tenant: entry seq commits to entry
-- seq-1's hash. Tenant transactions may append, never change or remove.
CREATE TABLE audit_entry (
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    seq         bigint NOT NULL CHECK (seq > 0),
    at          timestamptz NOT NULL,
    actor_kind  text NOT NULL,
    actor       text NOT NULL,
    actor_tenant text NOT NULL,
    role        text NOT NULL,
    purpose     text NOT NULL,
    legal_basis text NOT NULL,
    operation   text NOT NULL,
    register    text NOT NULL,
    record_id   uuid,
    outcome     text NOT NULL CHECK (outcome IN ('granted', 'denied', 'failed')),
    detail      text NOT NULL,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
SELECT parzelle_tenant_table('audit_entry', 'SELECT, INSERT');

-- The last entry of each tenant's chain: appends serialize on this row, and
-- it reveals entries removed from the end.
CREATE TABLE audit_head (
    tenant_id text PRIMARY KEY REFERENCES tenant (tenant_id),
    seq       bigint NOT NULL,
    hash      bytea NOT NULL
);
SELECT parzelle_tenant_table('audit_head', 'SELECT, INSERT, UPDATE');

-- Disclosures of records that carry an IDNr (§ 9 IDNrG), kept two years
-- for the Datenschutzcockpit. The IDNr is encrypted and blind-indexed.
CREATE TABLE register_access_log (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    at          timestamptz NOT NULL,
    register    text NOT NULL,
    record_id   uuid NOT NULL,
    idnr_index  bytea NOT NULL,
    key_version integer NOT NULL,
    idnr        bytea NOT NULL,
    actor       text NOT NULL,
    actor_tenant text NOT NULL,
    role        text NOT NULL,
    purpose     text NOT NULL,
    legal_basis text NOT NULL,
    operation   text NOT NULL,
    audit_seq   bigint NOT NULL
);
CREATE INDEX register_access_log_subject ON register_access_log (tenant_id, idnr_index, at);
CREATE INDEX register_access_log_at ON register_access_log (tenant_id, at);
CREATE INDEX register_access_log_key ON register_access_log (tenant_id, key_version);
SELECT parzelle_tenant_table('register_access_log', 'SELECT, INSERT, UPDATE, DELETE');
GRANT USAGE ON SEQUENCE register_access_log_id_seq TO parzelle_tenant;

-- Idempotency keys of API writes: a repeated key with the same request
-- gets the first result again, with another request a conflict.
CREATE TABLE register_idempotency (
    tenant_id    text NOT NULL REFERENCES tenant (tenant_id),
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    operation    text NOT NULL,
    record_id    uuid NOT NULL,
    revision     integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
SELECT parzelle_tenant_table('register_idempotency', 'SELECT, INSERT, UPDATE, DELETE');

-- Re-encryption after a data-key rotation: progress per tenant.
CREATE TABLE register_rotation (
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    key_version integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    total       bigint NOT NULL,
    done        bigint NOT NULL DEFAULT 0,
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, key_version)
);
SELECT parzelle_tenant_table('register_rotation', 'SELECT, INSERT, UPDATE');

-- The facts process messages stated about a subject, from which the
-- register derives the subject's record: one row per event and subject,
-- found by blind indexes of the subject key and the event id (an event id
-- may contain the subject key), the fact itself encrypted.
CREATE TABLE register_fact (
    tenant_id     text NOT NULL REFERENCES tenant (tenant_id),
    register      text NOT NULL,
    event_index   bytea NOT NULL,
    subject_index bytea NOT NULL,
    record_id     uuid NOT NULL,
    message_id    text NOT NULL,
    day           date NOT NULL,
    source        text NOT NULL,
    key_version   integer NOT NULL,
    payload       bytea NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, register, event_index),
    FOREIGN KEY (tenant_id, record_id) REFERENCES register_record (tenant_id, id)
);
CREATE INDEX register_fact_record ON register_fact (tenant_id, record_id);
CREATE INDEX register_fact_key ON register_fact (tenant_id, key_version);
SELECT parzelle_tenant_table('register_fact', 'SELECT, INSERT, UPDATE');

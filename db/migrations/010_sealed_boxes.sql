-- Message content, transport report texts and dead letters are sealed at
-- rest under the owning tenant's data key (see register_key), like the
-- register: key_version names the data key, and 0 marks what was stored
-- in plaintext before; an upgrade seals those rows in the background.
-- Routing metadata (who, to whom, which type, when) stays in plaintext,
-- queryable.
ALTER TABLE xta_chunk ADD COLUMN key_version integer NOT NULL DEFAULT 0;
-- A key rotation re-encrypts in place, within the tenant.
GRANT UPDATE (data, key_version) ON xta_chunk TO parzelle_tenant;

ALTER TABLE xta_report_record ALTER COLUMN reason TYPE bytea USING convert_to(reason, 'UTF8');
ALTER TABLE xta_report_record ADD COLUMN key_version integer NOT NULL DEFAULT 0;
GRANT UPDATE (reason, key_version) ON xta_report_record TO parzelle_tenant;

ALTER TABLE pipeline_dead_letter ALTER COLUMN reason TYPE bytea USING convert_to(reason, 'UTF8');
ALTER TABLE pipeline_dead_letter ALTER COLUMN problems DROP DEFAULT;
ALTER TABLE pipeline_dead_letter ALTER COLUMN problems TYPE bytea USING convert_to(problems::text, 'UTF8');
ALTER TABLE pipeline_dead_letter ADD COLUMN key_version integer NOT NULL DEFAULT 0;

-- Rows still in plaintext, found without a scan.
CREATE INDEX xta_chunk_unsealed ON xta_chunk (tenant_id) WHERE key_version = 0;
CREATE INDEX xta_report_record_unsealed ON xta_report_record (tenant_id) WHERE key_version = 0;
CREATE INDEX pipeline_dead_letter_unsealed ON pipeline_dead_letter (tenant_id) WHERE key_version = 0;

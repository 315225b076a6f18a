-- A dead letter keeps one identifier through its retries: a retried message
-- that fails again reopens its dead letter instead of getting a new one,
-- and every failure is kept as an attempt with its step and (sealed) error.
-- cause is a code from a fixed list (no personal data), so that dead
-- letters can be counted and filtered by reason without opening them.
ALTER TABLE pipeline_dead_letter ADD COLUMN cause text NOT NULL DEFAULT 'unknown';
CREATE INDEX pipeline_dead_letter_open_by_time ON pipeline_dead_letter (tenant_id, created_at DESC, id DESC) WHERE resolved_at IS NULL;
CREATE INDEX pipeline_dead_letter_message ON pipeline_dead_letter (tenant_id, message_id);

CREATE TABLE pipeline_dead_letter_attempt (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    dead_letter bigint NOT NULL REFERENCES pipeline_dead_letter (id) ON DELETE CASCADE,
    message_id  text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    step        text NOT NULL,
    cause       text NOT NULL,
    -- River attempts the failure took.
    attempts    integer NOT NULL,
    key_version integer NOT NULL,
    reason      bytea NOT NULL,
    problems    bytea NOT NULL
);
CREATE INDEX pipeline_dead_letter_attempt_letter ON pipeline_dead_letter_attempt (dead_letter, id);
CREATE INDEX pipeline_dead_letter_attempt_unsealed ON pipeline_dead_letter_attempt (tenant_id) WHERE key_version = 0;
SELECT parzelle_tenant_table('pipeline_dead_letter_attempt', 'SELECT, INSERT');
GRANT UPDATE (reason, problems, key_version) ON pipeline_dead_letter_attempt TO parzelle_tenant;
GRANT USAGE ON SEQUENCE pipeline_dead_letter_attempt_id_seq TO parzelle_tenant;

-- Earlier versions kept the first failure only in the dead letter itself.
INSERT INTO pipeline_dead_letter_attempt (tenant_id, dead_letter, message_id, at, step, cause, attempts, key_version, reason, problems)
SELECT tenant_id, id, message_id, created_at, step, cause, attempts, key_version, reason, problems FROM pipeline_dead_letter;

-- The console's message trace finds the records a message changed by the
-- transport's message id (message_id is the id the message gives itself).
ALTER TABLE register_fact ADD COLUMN transport_id text;
CREATE INDEX register_fact_transport ON register_fact (tenant_id, transport_id) WHERE transport_id IS NOT NULL;

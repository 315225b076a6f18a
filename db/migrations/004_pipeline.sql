-- Dead letters of the register pipeline: messages of a register inbox that
-- could not be applied, with the step that failed and why. A dead letter
-- stays until an operator retries or discards it; the message's content
-- stays in its inbox row meanwhile.
CREATE TABLE pipeline_dead_letter (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    inbox       bigint NOT NULL REFERENCES xta_message (id),
    message_id  text NOT NULL,
    author      text NOT NULL,
    reader      text NOT NULL,
    message_type text NOT NULL,
    step        text NOT NULL CHECK (step IN ('authorize', 'validate', 'map', 'apply')),
    reason      text NOT NULL,
    -- Validation errors and similar details, as JSON.
    problems    jsonb NOT NULL DEFAULT '[]',
    attempts    integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolution  text CHECK (resolution IN ('retried', 'discarded', 'applied'))
);
-- One open dead letter per message.
CREATE UNIQUE INDEX pipeline_dead_letter_open ON pipeline_dead_letter (tenant_id, inbox) WHERE resolved_at IS NULL;
CREATE INDEX pipeline_dead_letter_tenant ON pipeline_dead_letter (tenant_id, id);
SELECT parzelle_tenant_table('pipeline_dead_letter', 'SELECT, INSERT, UPDATE');
GRANT USAGE ON SEQUENCE pipeline_dead_letter_id_seq TO parzelle_tenant;

-- OSCI-Transport 1.2 explicit dialogs, in PostgreSQL so that any node of
-- a cluster answers a dialog's next request: the conversation, the last
-- SequenceNumber a client sent, the intermediary's last Challenge (the
-- client's next Response must equal it), and the signature certificate
-- that opened the dialog (its SHA-256; NULL when initDialog was unsigned).
CREATE TABLE osci_dialog (
    tenant_id       text NOT NULL REFERENCES tenant (tenant_id),
    conversation_id text NOT NULL,
    sequence_number integer NOT NULL,
    challenge       text NOT NULL,
    client          bytea,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    last_at         timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE INDEX osci_dialog_last ON osci_dialog (tenant_id, last_at);
SELECT parzelle_tenant_table('osci_dialog', 'SELECT, INSERT, UPDATE, DELETE');

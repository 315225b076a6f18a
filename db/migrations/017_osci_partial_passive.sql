-- OSCI partial deliveries and passive recipients: the chunks of a partialStoreDelivery wait here,
-- sealed under the tenant's data key, until the last one arrives and the
-- reassembled storeDelivery is carried out (or they expire); a
-- partialFetchDelivery keeps the response it hands out in chunks (its
-- MIME boundary and sealed SOAP envelope; the attachments stay in the
-- message box) so that every chunk is cut from the same bytes.
CREATE TABLE osci_chunk (
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    message_id  text NOT NULL,
    chunk_no    integer NOT NULL CHECK (chunk_no >= 1),
    total       integer NOT NULL CHECK (total >= chunk_no),
    chunk_kb    integer NOT NULL,
    message_kb  bigint NOT NULL,
    signer      text NOT NULL,
    key_version integer NOT NULL,
    data        bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, message_id, chunk_no)
);
CREATE INDEX osci_chunk_received ON osci_chunk (tenant_id, received_at);
SELECT parzelle_tenant_table('osci_chunk', 'SELECT, INSERT, UPDATE, DELETE');

CREATE TABLE osci_fetch_assembly (
    tenant_id       text NOT NULL REFERENCES tenant (tenant_id),
    conversation_id text NOT NULL,
    message_id      text NOT NULL,
    chunk_kb        integer NOT NULL,
    key_version     integer NOT NULL,
    envelope        bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, conversation_id)
);
SELECT parzelle_tenant_table('osci_fetch_assembly', 'SELECT, INSERT, UPDATE, DELETE');

-- A delivery an OSCI intermediary could not hand to its passive recipient
-- is a dead letter too, at the step 'forward', retried or discarded in the
-- console like the pipeline's.
ALTER TABLE pipeline_dead_letter DROP CONSTRAINT pipeline_dead_letter_step_check;
ALTER TABLE pipeline_dead_letter ADD CONSTRAINT pipeline_dead_letter_step_check CHECK (step IN ('authorize', 'validate', 'map', 'apply', 'forward'));

-- A MessageId handed out stays known once used for a delivery an XTA
-- account received under its XTA MessageID (stored_as): fetchProcessCard
-- finds the delivery by the MessageId its author knows.
ALTER TABLE osci_message_id ADD COLUMN stored_as text;
GRANT UPDATE ON osci_message_id TO parzelle_tenant;

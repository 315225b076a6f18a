-- XTA 2 messages. A message has one row per tenant that holds it: the
-- author's tenant keeps it in its outbox (with the transport report), the
-- reader's tenant, when the reader is hosted here, in its inbox (the message
-- box). Content lives with the row that delivers it: with the inbox row for
-- a local reader, with the outbox row while it waits for forwarding.
CREATE TABLE xta_message (
    id                bigserial PRIMARY KEY,
    tenant_id         text NOT NULL REFERENCES tenant (tenant_id),
    box               text NOT NULL CHECK (box IN ('outbox', 'inbox')),
    message_id        text NOT NULL,
    -- The account the row belongs to: the author in the outbox, the reader
    -- in the inbox.
    account           text NOT NULL,
    author            text NOT NULL,
    reader            text NOT NULL,
    -- The other row of the message: for an outbox row the inbox row of a
    -- reader hosted here (NULL when the message is forwarded), for an inbox
    -- row the author's outbox row.
    peer_tenant       text,
    peer_id           bigint,
    service           text NOT NULL,
    business_scenario text NOT NULL,
    message_type      text NOT NULL,
    -- oscimeta:MessageMetaData as received.
    metadata          text NOT NULL,
    content_size      bigint NOT NULL,
    test_msg          boolean NOT NULL DEFAULT false,
    not_before        timestamptz,
    sent_at           timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    fetched_at        timestamptz,
    closed_at         timestamptz,
    cancelled_at      timestamptz,
    -- Transport report status: 0 open, 1 green, 2 yellow, 3 red.
    status            smallint NOT NULL DEFAULT 0 CHECK (status BETWEEN 0 AND 3)
);
-- A MessageID is used once on this node (9024 otherwise).
CREATE UNIQUE INDEX xta_message_outbox_message_id ON xta_message (message_id) WHERE box = 'outbox';
CREATE UNIQUE INDEX xta_message_inbox_message_id ON xta_message (message_id) WHERE box = 'inbox';
CREATE INDEX xta_message_box ON xta_message (tenant_id, account, id) WHERE box = 'inbox' AND closed_at IS NULL;
SELECT parzelle_tenant_table('xta_message', 'SELECT, INSERT, UPDATE');
GRANT USAGE ON SEQUENCE xta_message_id_seq TO parzelle_tenant;

-- The xta:Message (part 0) and xta:Attachment parts of a message.
CREATE TABLE xta_part (
    tenant_id    text NOT NULL,
    message      bigint NOT NULL REFERENCES xta_message (id) ON DELETE CASCADE,
    part         smallint NOT NULL,
    attachment   boolean NOT NULL,
    content_type text NOT NULL,
    encoding     text,
    filename     text,
    part_ref     text,
    description  text,
    lang         text,
    size         bigint NOT NULL,
    PRIMARY KEY (message, part)
);
SELECT parzelle_tenant_table('xta_part', 'SELECT, INSERT, DELETE');

-- Part bytes in chunks of at most 1 MiB, so that neither writing nor
-- reading a 40 MB message needs it whole in memory.
CREATE TABLE xta_chunk (
    tenant_id text NOT NULL,
    message   bigint NOT NULL,
    part      smallint NOT NULL,
    seq       integer NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (message, part, seq),
    FOREIGN KEY (message, part) REFERENCES xta_part (message, part) ON DELETE CASCADE
);
ALTER TABLE xta_chunk ALTER COLUMN data SET STORAGE EXTERNAL;
SELECT parzelle_tenant_table('xta_chunk', 'SELECT, INSERT, DELETE');

-- The transport report's records: one per stage a message passed.
CREATE TABLE xta_report_record (
    id        bigserial PRIMARY KEY,
    tenant_id text NOT NULL,
    message   bigint NOT NULL REFERENCES xta_message (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    level     text NOT NULL CHECK (level IN ('error', 'warning', 'info')),
    code      text NOT NULL,
    reason    text NOT NULL
);
CREATE INDEX xta_report_record_message ON xta_report_record (message, id);
SELECT parzelle_tenant_table('xta_report_record', 'SELECT, INSERT');
GRANT USAGE ON SEQUENCE xta_report_record_id_seq TO parzelle_tenant;

-- OSCI postboxes: a dialog remembers the cipher certificate its opener
-- presented in initDialog (DER: a fetchDelivery in the dialog collects
-- that certificate's postbox, and encrypted answers go to it) and the MessageId of the delivery it fetched
-- last, which counts as received with the dialog's next request (a lost
-- response leaves it to be fetched again); the intermediary remembers the
-- MessageIds it handed out with getMessageId until a storeDelivery uses
-- one (9801 for any other) or they expire unused.
ALTER TABLE osci_dialog ADD COLUMN cipher bytea, ADD COLUMN fetched text;

CREATE TABLE osci_message_id (
    tenant_id  text NOT NULL REFERENCES tenant (tenant_id),
    message_id text NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX osci_message_id_issued ON osci_message_id (tenant_id, issued_at);
SELECT parzelle_tenant_table('osci_message_id', 'SELECT, INSERT, DELETE');

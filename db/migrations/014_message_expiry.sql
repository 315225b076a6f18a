-- Transport messages the node is done with are deleted after the node's
-- retention.messages (msgbox.Store.Expire): an inbox row closed (received,
-- or refused and its dead letter discarded) whose content is gone, and an
-- outbox row whose report is final (green, yellow or red) and whose
-- reader's row is gone, so that no later report record can be written to
-- it. The reader's row may belong to another tenant, which the tenant
-- transaction cannot see: hence a function, confined to the entered tenant
-- for what it deletes.
CREATE FUNCTION parzelle_expire_messages(cutoff timestamptz, lim integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    t text := parzelle_entered_tenant();
    n bigint;
BEGIN
    WITH done AS (
        SELECT m.id FROM xta_message m
        WHERE m.tenant_id = t AND m.sent_at < cutoff AND (
            (m.box = 'inbox' AND m.closed_at < cutoff AND NOT EXISTS (SELECT 1 FROM xta_part p WHERE p.message = m.id))
            OR (m.box = 'outbox' AND m.status <> 0 AND coalesce(m.closed_at, m.cancelled_at, m.delivered_at, m.sent_at) < cutoff
                AND (m.peer_id IS NULL OR NOT EXISTS (SELECT 1 FROM xta_message r WHERE r.id = m.peer_id))))
        LIMIT lim FOR UPDATE OF m SKIP LOCKED
    )
    DELETE FROM xta_message WHERE id IN (SELECT id FROM done);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION parzelle_expire_messages(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION parzelle_expire_messages(timestamptz, integer) TO parzelle_tenant;

-- sent_at never changes, so this index keeps the status updates HOT.
CREATE INDEX xta_message_sent ON xta_message (tenant_id, sent_at);

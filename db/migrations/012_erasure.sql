-- Erasure: a record past its register's retention, or named in an erasure
-- order, is deleted with everything that holds its data — versions, facts,
-- blind indexes, merges, idempotency keys — and the records merged into it
-- (the same person). Tenant transactions still may not DELETE register
-- rows: they erase through these two functions only, each confined to the
-- tenant the transaction entered. The audit entry of an erasure (written by
-- the caller in the same transaction) names the record, never its values;
-- the access log of the record's disclosures stays until it expires.

-- parzelle_entered_tenant is the tenant the transaction entered
-- (db.InTenant); it fails when there is none, so that a definer function
-- never runs for no tenant.
CREATE FUNCTION parzelle_entered_tenant() RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t text := current_setting('parzelle.tenant_id', true);
BEGIN
    IF t IS NULL OR t = '' THEN
        RAISE EXCEPTION 'no tenant entered';
    END IF;
    RETURN t;
END
$$;

-- parzelle_erase_record erases record rec of the current tenant and the
-- records merged into it, and returns how many records, versions, facts
-- and index entries it deleted (all 0 when the tenant has no such record).
CREATE FUNCTION parzelle_erase_record(rec uuid, OUT records bigint, OUT versions bigint, OUT facts bigint, OUT indexes bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    t   text := parzelle_entered_tenant();
    ids uuid[];
BEGIN
    WITH RECURSIVE tree (id) AS (
        SELECT id FROM register_record WHERE tenant_id = t AND id = rec
        UNION
        SELECT r.id FROM register_record r JOIN tree ON r.tenant_id = t AND r.merged_into = tree.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO ids FROM tree;
    DELETE FROM register_index WHERE tenant_id = t AND record_id = ANY (ids);
    GET DIAGNOSTICS indexes = ROW_COUNT;
    DELETE FROM register_fact WHERE tenant_id = t AND record_id = ANY (ids);
    GET DIAGNOSTICS facts = ROW_COUNT;
    DELETE FROM register_version WHERE tenant_id = t AND record_id = ANY (ids);
    GET DIAGNOSTICS versions = ROW_COUNT;
    DELETE FROM register_merge WHERE tenant_id = t AND (survivor = ANY (ids) OR merged = ANY (ids));
    DELETE FROM register_idempotency WHERE tenant_id = t AND record_id = ANY (ids);
    DELETE FROM register_record WHERE tenant_id = t AND id = ANY (ids);
    GET DIAGNOSTICS records = ROW_COUNT;
END
$$;

-- parzelle_erase_versions erases the versions of record rec of the current
-- tenant that were superseded before cutoff, and returns how many.
CREATE FUNCTION parzelle_erase_versions(rec uuid, cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    t text := parzelle_entered_tenant();
    n bigint;
BEGIN
    DELETE FROM register_version WHERE tenant_id = t AND record_id = rec AND superseded_at < cutoff;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION parzelle_erase_record(uuid), parzelle_erase_versions(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION parzelle_erase_record(uuid), parzelle_erase_versions(uuid, timestamptz) TO parzelle_tenant;

-- Versions past retention, found without reading every version.
CREATE INDEX register_version_superseded ON register_version (tenant_id, superseded_at) WHERE superseded_at <> 'infinity';
-- Ended records past retention.
CREATE INDEX register_record_ended ON register_record (tenant_id, register, deleted_at) WHERE deleted_at IS NOT NULL;

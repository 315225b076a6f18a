-- Tenants and the applied versions of their declarative configuration files,
-- and the helper every later migration uses to make a table tenant-owned.

-- parzelle_tenant_table makes a table that carries tenant_id tenant-owned:
-- row-level security on, one policy that lets the parzelle_tenant role (the
-- role of every tenant-scoped transaction, see db.InTenant) see and write only
-- rows of the tenant set in parzelle.tenant_id, and the given privileges.
-- No tenant set means no rows: the policy fails closed.
CREATE FUNCTION parzelle_tenant_table(tbl regclass, privileges text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %s TO parzelle_tenant
        USING (tenant_id = current_setting('parzelle.tenant_id', true))
        WITH CHECK (tenant_id = current_setting('parzelle.tenant_id', true))$p$, tbl);
    EXECUTE format('GRANT %s ON %s TO parzelle_tenant', privileges, tbl);
END
$$;

CREATE TABLE tenant (
    tenant_id      text PRIMARY KEY CHECK (tenant_id ~ '^[a-z][a-z0-9-]{1,62}$'),
    name           text NOT NULL,
    active         boolean NOT NULL DEFAULT true,
    config_version integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
SELECT parzelle_tenant_table('tenant', 'SELECT');

-- One row per applied version of a tenant file: what was applied, from
-- which file, when. Versions count up per tenant and are never rewritten.
CREATE TABLE tenant_config_version (
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    version     integer NOT NULL CHECK (version > 0),
    sha256      text NOT NULL,
    source_file text NOT NULL,
    document    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);
SELECT parzelle_tenant_table('tenant_config_version', 'SELECT');

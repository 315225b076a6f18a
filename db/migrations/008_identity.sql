-- Who a person is: records that a message (or a clerk) proved to be one
-- person are merged. The merged record ends and names the record it was
-- merged into; the merge keeps the facts it moved, so that it can be
-- undone. Reasons name records and messages, never personal data.
ALTER TABLE register_record ADD COLUMN merged_into uuid;

CREATE TABLE register_merge (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenant (tenant_id),
    register    text NOT NULL,
    survivor    uuid NOT NULL,
    merged      uuid NOT NULL,
    -- the event indexes of the facts moved from merged to survivor
    events      bytea[] NOT NULL,
    reason      text NOT NULL,
    message_id  text,
    merged_at   timestamptz NOT NULL DEFAULT now(),
    undone_at   timestamptz,
    FOREIGN KEY (tenant_id, survivor) REFERENCES register_record (tenant_id, id),
    FOREIGN KEY (tenant_id, merged) REFERENCES register_record (tenant_id, id),
    CHECK (survivor <> merged)
);
CREATE INDEX register_merge_survivor ON register_merge (tenant_id, survivor);
CREATE INDEX register_merge_merged ON register_merge (tenant_id, merged);
SELECT parzelle_tenant_table('register_merge', 'SELECT, INSERT, UPDATE');
GRANT USAGE ON SEQUENCE register_merge_id_seq TO parzelle_tenant;

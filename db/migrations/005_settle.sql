-- A register inbox message that was applied leaves no box row behind: its
-- facts are in the register and its author's report says it was applied.
-- A dead letter of such a message (retried, then applied) keeps its
-- history; only its link to the stored message ends.
ALTER TABLE pipeline_dead_letter ALTER COLUMN inbox DROP NOT NULL;
ALTER TABLE pipeline_dead_letter DROP CONSTRAINT pipeline_dead_letter_inbox_fkey;
ALTER TABLE pipeline_dead_letter ADD CONSTRAINT pipeline_dead_letter_inbox_fkey
    FOREIGN KEY (inbox) REFERENCES xta_message (id) ON DELETE SET NULL;
CREATE INDEX pipeline_dead_letter_inbox ON pipeline_dead_letter (inbox);
GRANT DELETE ON xta_message TO parzelle_tenant;

-- Message content is compressed with lz4, about twice as fast as pglz, where
-- the server was built with it.
DO $$
BEGIN
    ALTER TABLE xta_chunk ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL server has no lz4: message content stays compressed with pglz';
END
$$;

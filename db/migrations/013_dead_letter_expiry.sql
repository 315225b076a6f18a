-- A resolved dead letter keeps its sealed error texts, which may quote the
-- message's personal data, only for the node's retention.deadLetters
-- (jobs.DeadLetters.Expire); its attempts go with it.
GRANT DELETE ON pipeline_dead_letter TO parzelle_tenant;
CREATE INDEX pipeline_dead_letter_resolved ON pipeline_dead_letter (tenant_id, resolved_at) WHERE resolved_at IS NOT NULL;

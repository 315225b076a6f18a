-- A message this node could not deliver over OSCI to a reader behind
-- another intermediary (refused there, out of reach, or the directory has
-- no usable entry) is a dead letter of its author's tenant at the step
-- 'send': its outbox message keeps its content until an operator retries
-- or discards it in the console. A delivery collected from a postbox at
-- another intermediary that cannot be opened is one at the step 'collect'.
ALTER TABLE pipeline_dead_letter DROP CONSTRAINT pipeline_dead_letter_step_check;
ALTER TABLE pipeline_dead_letter ADD CONSTRAINT pipeline_dead_letter_step_check CHECK (step IN ('authorize', 'validate', 'map', 'apply', 'forward', 'send', 'collect'));

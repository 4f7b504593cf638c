-- The replay memo (consumer/pipeline/replay_memo.py): a digest of the record, mapping, parent and map row
-- the last write of this row was decided from, stored only when a replay of that record is known to end
-- `unchanged`. Every write of the row sets it (NULL when the write leaves no memo), so a stale memo never
-- survives a change of the row.
ALTER TABLE zoho_entity_map ADD COLUMN IF NOT EXISTS replay_memo text;

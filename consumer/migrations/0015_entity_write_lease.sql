-- Two processes writing one entity at once (a backfill or a reprocess beside the live sync) could land an
-- older state in Zoho after a newer one, while the map kept the newer hash: Zoho rolled back for good.
-- `version` counts the row's writes: a write to Zoho is sent only while the row is still the version its
-- plan was made from. `sending` is the lease of the write in flight (a random token, NULL when none): a
-- second process waits for it, and takes it over only once it has stood unchanged for a call's deadline
-- (its holder died). The outcome's own map write releases it (`consumer.pipeline.effects.write_lease`).
ALTER TABLE zoho_entity_map ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;
ALTER TABLE zoho_entity_map ADD COLUMN IF NOT EXISTS sending text;

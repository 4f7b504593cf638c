-- Everything zoho-cdc remembers about Zoho records belongs to one Zoho organisation (issue 22, item 5):
-- the entity map, create intents and the item map are keyed by `organization_id` (ZOHO_ORGANIZATION_ID),
-- so a backfill into a second organisation creates its records there instead of finding the first
-- one's ids in the map. The replay memo lives on the map row, so it is per organisation with it.
--
-- Rows written before this migration get organization_id '' ("unclaimed"), not the organisation
-- configured when the migration runs: every zoho-cdc command migrates at start, and the first command
-- after an upgrade may well be the backfill into a *new* organisation (the very case this fixes);
-- giving it the old rows would make that backfill believe the new organisation already holds
-- everything. Unclaimed rows are claimed by the live sync (`zoho-cdc run`), which runs against the
-- organisation whose ids the source's zoho_* columns hold (`consumer.pipeline.organisations`).
-- The default is dropped after: every row written from now on names its organisation.
ALTER TABLE zoho_entity_map ADD COLUMN organization_id text NOT NULL DEFAULT '';
ALTER TABLE zoho_entity_map ALTER COLUMN organization_id DROP DEFAULT;
ALTER TABLE zoho_entity_map DROP CONSTRAINT zoho_entity_map_pkey;
ALTER TABLE zoho_entity_map ADD PRIMARY KEY (organization_id, entity_type, entity_id);
DROP INDEX IF EXISTS zoho_entity_map_zoho_id;
CREATE INDEX zoho_entity_map_zoho_id ON zoho_entity_map (organization_id, entity_type, zoho_id);

ALTER TABLE zoho_sync_intent ADD COLUMN organization_id text NOT NULL DEFAULT '';
ALTER TABLE zoho_sync_intent ALTER COLUMN organization_id DROP DEFAULT;
ALTER TABLE zoho_sync_intent DROP CONSTRAINT zoho_sync_intent_pkey;
ALTER TABLE zoho_sync_intent ADD PRIMARY KEY (organization_id, entity_type, entity_id);

ALTER TABLE zoho_item_map ADD COLUMN organization_id text NOT NULL DEFAULT '';
ALTER TABLE zoho_item_map ALTER COLUMN organization_id DROP DEFAULT;
ALTER TABLE zoho_item_map DROP CONSTRAINT zoho_item_map_pkey;
ALTER TABLE zoho_item_map ADD PRIMARY KEY (organization_id, kind, key);

-- The organisation the live sync runs against: the one whose ids the source's id columns hold. Only
-- that organisation's outcomes are written back to the source; a backfill into another keeps its ids
-- in its own map rows. Recorded by `zoho-cdc run` at start (and by the first sync of a new install);
-- when `run` starts against another organisation, the source's ids are set from that organisation's
-- map, each change logged. One row.
CREATE TABLE zoho_live_organization (
  one             boolean     PRIMARY KEY DEFAULT true CHECK (one),
  organization_id text        NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now()
);

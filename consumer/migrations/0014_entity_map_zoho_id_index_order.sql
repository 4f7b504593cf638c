-- The entity map's by-Zoho-id index leads with the Zoho id, so it can never stand in for the primary key.
-- As (organization_id, entity_type, zoho_id) it shared the key's first two columns: on a map not yet
-- analysed (a fresh database, a first backfill; autovacuum analyses a minute or more later) an entity's
-- row looked as cheap to find through it as through the key, the planner took it as the smaller index and
-- read every row of the entity type for each entity asked (a no-op replay of 15,000 entities: 8 million
-- rows read instead of 15,000; a backfill's pooled connections held that long). Lookups by Zoho id name
-- all three columns and use it as before.
DROP INDEX IF EXISTS zoho_entity_map_zoho_id;
CREATE INDEX zoho_entity_map_zoho_id ON zoho_entity_map (zoho_id, organization_id, entity_type);

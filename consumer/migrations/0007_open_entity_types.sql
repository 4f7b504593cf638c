-- Entities are values (one spec per source table, consumer/entities): the set of entity types is the
-- registry's, not the schema's. A new table must not need a migration of zoho-cdc's own tables, and a
-- sync log that refuses a row because of a hard-coded list is the failure this product exists to end.
-- The type stays a non-empty name; 'unknown' is still what an undecodable record is logged as.
ALTER TABLE zoho_sync_log DROP CONSTRAINT IF EXISTS zoho_sync_log_entity_type_check;
ALTER TABLE zoho_sync_log ADD CONSTRAINT zoho_sync_log_entity_type_named CHECK (entity_type <> '');
ALTER TABLE zoho_entity_map DROP CONSTRAINT IF EXISTS zoho_entity_map_entity_type_check;
ALTER TABLE zoho_entity_map ADD CONSTRAINT zoho_entity_map_entity_type_named CHECK (entity_type <> '');

-- Adoption of Zoho records zoho-cdc did not create (switching over from another integration): a Zoho
-- record is adopted by at most one source entity, per organisation. The first claim wins (the primary
-- key makes claiming atomic across workers and processes); a later claimant is dead-lettered, never
-- mapped onto it.
CREATE TABLE IF NOT EXISTS zoho_adoption_claim (
  organization_id text        NOT NULL,
  entity_type     text        NOT NULL,
  zoho_id         text        NOT NULL,
  entity_id       text        NOT NULL,
  matched_by      text        NOT NULL,
  claimed_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, entity_type, zoho_id)
);
CREATE INDEX IF NOT EXISTS zoho_adoption_claim_entity
  ON zoho_adoption_claim (organization_id, entity_type, entity_id);

-- Adoptions undone by hand (`zoho-cdc adopt unlink`): the entity is never matched to that record again.
CREATE TABLE IF NOT EXISTS zoho_adoption_refused (
  organization_id text        NOT NULL,
  entity_type     text        NOT NULL,
  entity_id       text        NOT NULL,
  zoho_id         text        NOT NULL,
  refused_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, entity_type, entity_id, zoho_id)
);

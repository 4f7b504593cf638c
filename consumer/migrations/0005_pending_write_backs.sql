-- Write-backs to the source rows, queued in the outcome's transaction and applied apart from it with a
-- lock timeout: an application transaction holding a source row never blocks other outcomes or commits.
CREATE TABLE zoho_pending_write_back (
  entity_type  text        NOT NULL,
  entity_id    text        NOT NULL,
  zoho_id      text,
  sync_status  text        NOT NULL,
  called       boolean     NOT NULL,  -- Zoho was called: zoho_last_synced_at moves
  queued_at    timestamptz NOT NULL DEFAULT now(),
  attempts     integer     NOT NULL DEFAULT 0,
  PRIMARY KEY (entity_type, entity_id)
);

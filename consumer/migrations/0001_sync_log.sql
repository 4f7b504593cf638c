-- zoho-cdc's own state: one sync-log row per event outcome, the entity map, and create intents.

CREATE TABLE zoho_sync_log (
  id              bigserial PRIMARY KEY,
  consumer_group  text        NOT NULL,
  topic           text        NOT NULL,
  kafka_partition integer     NOT NULL,
  kafka_offset    bigint      NOT NULL,
  entity_type     text        NOT NULL CHECK (entity_type IN ('customer', 'invoice', 'unknown')),
  entity_id       text,
  outcome         text        NOT NULL
                  CHECK (outcome IN ('synced', 'skipped', 'unchanged', 'stale', 'superseded', 'failed', 'dead_lettered')),
  operation       text,
  zoho_id         text,
  http_status     integer,
  attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  error           text,
  duration_ms     integer,
  source_lsn      bigint,
  source_ts_ms    bigint,
  created_at      timestamptz NOT NULL DEFAULT now(),
  -- A redelivered event (same group, same offset) never adds a second row.
  UNIQUE (consumer_group, topic, kafka_partition, kafka_offset)
);
CREATE INDEX zoho_sync_log_created_at ON zoho_sync_log (created_at);
CREATE INDEX zoho_sync_log_entity ON zoho_sync_log (entity_type, entity_id);

CREATE TABLE zoho_entity_map (
  entity_type   text        NOT NULL CHECK (entity_type IN ('customer', 'invoice')),
  entity_id     text        NOT NULL,
  zoho_id       text,
  payload_hash  text,
  last_lsn      bigint,
  zoho_status   text,
  natural_key   text,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (entity_type, entity_id)
);
CREATE INDEX zoho_entity_map_zoho_id ON zoho_entity_map (entity_type, zoho_id);

-- Written durably before a create call, removed with the outcome. An intent left behind by a crash
-- means the create may have happened: it is resolved by a natural-key lookup before any new create.
CREATE TABLE zoho_sync_intent (
  entity_type  text        NOT NULL,
  entity_id    text        NOT NULL,
  operation    text        NOT NULL,
  natural_key  text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (entity_type, entity_id)
);

-- Issue 23's fixes (e, h/j, f): refused write-backs set apart, a lookup of dead-lettered records, and
-- children waiting for a parent Zoho refused.

-- A write-back the source table refuses (a CHECK, a trigger, a length limit of a production schema) is
-- set apart instead of rolling back its whole batch again every few seconds: the error is kept here, the
-- row is tried again after a growing pause (the schema may be fixed), and a newer write-back of the same
-- row clears the refusal. The status page counts them.
ALTER TABLE zoho_pending_write_back
  ADD COLUMN refused       text,         -- the database's error, NULL while not refused
  ADD COLUMN refusals      integer     NOT NULL DEFAULT 0,
  ADD COLUMN retry_after   timestamptz;  -- not looked at before this time


-- Whether a record was dead-lettered by any group (a replay must not publish an undecodable record twice).
CREATE INDEX zoho_sync_log_dead_lettered ON zoho_sync_log (topic, kafka_partition, kafka_offset)
  WHERE outcome = 'dead_lettered';

-- Children dead-lettered because Zoho refused their parent, sent again once the parent is synced
-- (`consumer.pipeline.follow_ups`); each handover takes its sync-log offset from the sequence. Per Zoho
-- organisation, as the entity map: a parent synced into another organisation releases nothing here.
CREATE TABLE zoho_waiting_for_parent (
  organization_id text     NOT NULL,
  entity_type  text        NOT NULL,
  entity_id    text        NOT NULL,
  parent_type  text        NOT NULL,
  parent_id    text        NOT NULL,
  since        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, entity_type, entity_id)
);
CREATE INDEX zoho_waiting_for_parent_parent ON zoho_waiting_for_parent (organization_id, parent_type, parent_id);
CREATE SEQUENCE zoho_follow_up_seq;

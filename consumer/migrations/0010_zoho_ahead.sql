-- Zoho is ahead (consumer/pipeline/plan.py, `ZohoAhead`): Zoho's record moved on its own (an invoice paid in
-- the customer portal, voided or made inactive by hand) while the source still says what zoho-cdc last set.
-- Such a change is recorded `zoho_ahead` (no call, no dead letter), and the entity map keeps Zoho's status
-- in `zoho_ahead` until the source agrees with it, so later echoes and edits are not sent into a refusal.
ALTER TABLE zoho_sync_log DROP CONSTRAINT IF EXISTS zoho_sync_log_outcome_check;
ALTER TABLE zoho_sync_log ADD CONSTRAINT zoho_sync_log_outcome_check CHECK (
  outcome IN ('synced', 'skipped', 'unchanged', 'stale', 'superseded', 'failed', 'dead_lettered', 'zoho_ahead')
);
ALTER TABLE zoho_entity_map ADD COLUMN IF NOT EXISTS zoho_ahead text;

-- What the entity map remembers beyond the acknowledged payload hash (echo safety):
--   source_row     the last full image of the mapped source columns, to fill TOAST placeholders;
--   rejected_digest the mapped state Zoho (or the mapping) last refused, so it is not sent again;
--   currency_code  the currency a customer was created with in Zoho (updates never change it).
ALTER TABLE zoho_entity_map
  ADD COLUMN source_row      jsonb,
  ADD COLUMN rejected_digest text,
  ADD COLUMN currency_code   text;

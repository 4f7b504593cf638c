-- Zoho items zoho-cdc created or found for invoice lines, so each is looked up or created once:
--   kind 'code'    a source line code (sku / item_code) -> the Zoho item of that name;
--   kind 'default' the item for lines without a code (its name is ZOHO_DEFAULT_ITEM_NAME).
CREATE TABLE zoho_item_map (
  kind          text        NOT NULL CHECK (kind IN ('code', 'default')),
  key           text        NOT NULL,
  zoho_item_id  text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, key)
);

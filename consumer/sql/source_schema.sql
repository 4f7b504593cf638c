-- The source schema this product targets (a copy of the user's design card schema).
-- Applied by 'zoho-cdc dev up' and the tests; production databases already have it.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE IF NOT EXISTS customers (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  account_number text UNIQUE NOT NULL,
  email text,
  first_name text,
  last_name text,
  company_name text,
  phone text,
  account_type text NOT NULL DEFAULT 'personal' CHECK (account_type IN ('personal','business','internal_test')),
  billing_address jsonb,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active','suspended','closed')),
  notes text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  zoho_billing_customer_id text,
  zoho_sync_status text,
  zoho_last_synced_at timestamptz
);
CREATE TABLE IF NOT EXISTS customer_invoices (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  customer_id uuid NOT NULL REFERENCES customers(id),
  invoice_number text UNIQUE NOT NULL,
  invoice_date date NOT NULL,
  due_date date,
  currency char(3) NOT NULL DEFAULT 'ZAR',
  subtotal numeric(12,2) NOT NULL,
  vat_amount numeric(12,2) NOT NULL DEFAULT 0,
  total_amount numeric(12,2) NOT NULL,
  status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft','sent','paid','void')),
  line_items jsonb NOT NULL DEFAULT '[]',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  zoho_billing_invoice_id text,
  zoho_sync_status text,
  zoho_last_synced_at timestamptz
);

-- Debezium's signalling table: rows inserted here trigger incremental snapshots
-- ('zoho-cdc snapshot'). Its columns are fixed by Debezium (id, type, data).
CREATE TABLE IF NOT EXISTS debezium_signal (
  id varchar(42) PRIMARY KEY,
  type varchar(32) NOT NULL,
  data varchar(2048)
);

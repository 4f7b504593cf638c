-- State of the Zoho connector that must survive a restart: the OAuth access token (so a restart
-- within its hour does not spend one of the 10 refreshes per 10 minutes) and the calls spent per UTC day.

CREATE TABLE zoho_oauth_token (
  token_key    text        PRIMARY KEY,  -- a hash of accounts URL + client id + refresh token, never the secret
  access_token text        NOT NULL,
  api_domain   text        NOT NULL,
  expires_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE zoho_daily_budget (
  organization_id text        NOT NULL,
  day             date        NOT NULL,  -- UTC day
  calls           integer     NOT NULL DEFAULT 0 CHECK (calls >= 0),
  exhausted       boolean     NOT NULL DEFAULT false,  -- Zoho said code 45 before our own count ran out
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, day)
);

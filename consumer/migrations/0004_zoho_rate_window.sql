-- The organisation's rate window, shared by every zoho-cdc process (connectors/zoho/window.py).
-- Times are seconds since the epoch on the database's clock, the one clock all processes share.

CREATE TABLE zoho_rate_org (
  organization_id text             PRIMARY KEY,
  rate            double precision NOT NULL,            -- adaptive calls per window (AIMD on 429)
  ceiling         double precision NOT NULL,            -- what the server was seen to allow
  paused_until    double precision NOT NULL DEFAULT 0,  -- every process waits after a 429
  last_decrease   double precision NOT NULL DEFAULT 0,
  episodes        integer          NOT NULL DEFAULT 0,
  next_send_at    double precision NOT NULL DEFAULT 0,  -- even pacing: the next free send time
  updated_at      timestamptz      NOT NULL DEFAULT now()
);

-- A block of send slots one process reserved; it counts against every window overlapping
-- [reserved_at, last_at]. Unused slots are handed back (slots lowered, last_at moved to the last send).
CREATE TABLE zoho_rate_block (
  id              bigserial        PRIMARY KEY,
  organization_id text             NOT NULL,
  member          text             NOT NULL,
  reserved_at     double precision NOT NULL,
  last_at         double precision NOT NULL,
  slots           integer          NOT NULL CHECK (slots >= 0)
);
CREATE INDEX zoho_rate_block_org_last ON zoho_rate_block (organization_id, last_at);

-- Processes using the organisation and the in-flight permits each holds (never fewer than its calls
-- in flight); a member whose lease ran out (a killed process) no longer counts.
CREATE TABLE zoho_rate_member (
  organization_id text             NOT NULL,
  member          text             NOT NULL,
  label           text             NOT NULL DEFAULT '',
  permits         integer          NOT NULL CHECK (permits >= 0),
  demand          integer          NOT NULL DEFAULT 0,
  in_flight       integer          NOT NULL DEFAULT 0,
  lease_until     double precision NOT NULL,
  PRIMARY KEY (organization_id, member)
);

-- The live members of each consumer group and the partitions each holds, as reported by every
-- `zoho-cdc run` every few seconds (the broker's DescribeGroups does not show assignments on Tansu).
CREATE TABLE zoho_cdc_group_member (
  consumer_group text        NOT NULL,
  instance       text        NOT NULL,  -- KAFKA_GROUP_INSTANCE_ID, else host:pid
  host           text        NOT NULL,
  pid            integer     NOT NULL,
  partitions     text[]      NOT NULL DEFAULT '{}',  -- topic/partition
  started_at     timestamptz NOT NULL DEFAULT now(),
  seen_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, instance)
);

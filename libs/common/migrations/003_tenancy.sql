-- Tenancy: plans, workspace options, IP allowlists, event schemas, shared
-- rate-limit counters, and the event columns that admin events and schema
-- checks need.

-- The plan's numbers live in libs/common/plans.toml (or CHAINLOG_PLANS_FILE);
-- limits_override holds an Enterprise workspace's custom numbers.
ALTER TABLE workspaces
  ADD COLUMN plan            text NOT NULL DEFAULT 'free',
  ADD COLUMN limits_override jsonb,
  ADD COLUMN schema_mode     text NOT NULL DEFAULT 'permissive'
    CHECK (schema_mode IN ('strict', 'permissive'));

CREATE TABLE ip_allowlist (
  id            uuid PRIMARY KEY,
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  cidr          cidr NOT NULL,
  description   text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, cidr)
);

CREATE TABLE event_schemas (
  id               uuid PRIMARY KEY,
  workspace_id     uuid NOT NULL REFERENCES workspaces(id),
  action_pattern   text NOT NULL,
  description      text NOT NULL DEFAULT '',
  metadata_schema  jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, action_pattern)
);

-- Each gateway instance publishes its request count per workspace and
-- fixed window; every instance reads the others' (services/ingest/ratelimit.py).
CREATE TABLE rate_usage (
  workspace_id  uuid NOT NULL,
  window_start  bigint NOT NULL,       -- epoch seconds, a multiple of the window
  instance      text NOT NULL,
  requests      integer NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, window_start, instance)
);

-- Live gateway instances (heartbeat), to share per-second ceilings.
CREATE TABLE gateway_instances (
  instance  text PRIMARY KEY,
  seen_at   timestamptz NOT NULL DEFAULT now()
);

-- Admin events are filtered by category; permissive schema checks mark events.
ALTER TABLE events
  ADD COLUMN action_category   text,
  ADD COLUMN schema_violation  boolean NOT NULL DEFAULT false;
CREATE INDEX events_category ON events (workspace_id, action_category, seq)
  WHERE action_category IS NOT NULL;
CREATE INDEX events_schema_violation ON events (workspace_id, seq) WHERE schema_violation;

GRANT SELECT, INSERT, UPDATE, DELETE ON
  ip_allowlist, event_schemas, rate_usage, gateway_instances
  TO chainlog_app;

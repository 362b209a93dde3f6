-- The spine: workspaces, API keys, idempotency reservations, the events table.

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chainlog_app') THEN
    CREATE ROLE chainlog_app LOGIN;
  END IF;
END $$;

CREATE TABLE workspaces (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id            uuid PRIMARY KEY,
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  name          text NOT NULL,
  prefix        text NOT NULL UNIQUE,
  key_hash      bytea NOT NULL,          -- SHA-256 of the whole key; the key is never stored
  scopes        text[] NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz
);

-- The gateway's reservation of an idempotency key (24-hour window).
-- acked = false: published but not yet acknowledged by Kafka (or the gateway
-- crashed in between); a retry then re-publishes under the same event id and
-- the chainer's own de-duplication keeps exactly one.
CREATE TABLE idempotency_keys (
  workspace_id  uuid NOT NULL,
  key           text NOT NULL,
  event_id      uuid NOT NULL,
  acked         boolean NOT NULL DEFAULT false,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, key)
);

-- One row per chained event. `body` is the exact canonical bytes that were
-- hashed; every field the API serves is read from it. The other columns
-- only index it (and verify checks them against the body).
CREATE TABLE events (
  workspace_id  uuid   NOT NULL,
  seq           bigint NOT NULL,
  id            uuid   NOT NULL,
  hash          bytea  NOT NULL,
  prev_hash     bytea  NOT NULL,
  body          bytea  NOT NULL,
  received_at   timestamptz NOT NULL,
  occurred_at   timestamptz NOT NULL,
  action        text COLLATE "C" NOT NULL,
  actor_id      text NOT NULL,
  resource      text,
  resource_id   text,
  tenant_id     text,
  session_id    text,
  targets       jsonb,
  search_text   text NOT NULL,
  ip_country    text,
  ip_city       text,
  PRIMARY KEY (workspace_id, seq)
);

CREATE INDEX events_id ON events (id);
CREATE INDEX events_action ON events (workspace_id, action, seq);
CREATE INDEX events_actor ON events (workspace_id, actor_id, seq);
CREATE INDEX events_occurred ON events (workspace_id, occurred_at);
CREATE INDEX events_resource ON events (workspace_id, resource, resource_id, seq) WHERE resource IS NOT NULL;
CREATE INDEX events_tenant ON events (workspace_id, tenant_id, seq) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_session ON events (workspace_id, session_id, seq) WHERE session_id IS NOT NULL;
CREATE INDEX events_targets ON events USING gin (targets jsonb_path_ops) WHERE targets IS NOT NULL;

-- Append-only: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit events are append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

GRANT SELECT, INSERT ON events TO chainlog_app;
GRANT SELECT, INSERT, UPDATE ON workspaces, api_keys TO chainlog_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO chainlog_app;

-- Alerts: members (who gets alert email), webhook endpoints, rules, the
-- alerts they raise, their deliveries, and the alerter's durable state.

-- The people of a workspace. Issue 5 grows this into team management; the
-- alerter needs it now to email a workspace's owners and admins.
CREATE TABLE workspace_members (
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  email         text NOT NULL,
  role          text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, email)
);

-- Where webhook alerts go. The signing secret is stored encrypted
-- (libs/common/secretbox.py, AES-256-GCM bound to the row id) and shown once.
-- Deleting an endpoint only marks it, so past deliveries still name it.
CREATE TABLE webhook_endpoints (
  id            uuid PRIMARY KEY,
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  url           text NOT NULL,
  description   text NOT NULL DEFAULT '',
  secret_enc    bytea NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  deleted_at    timestamptz
);
CREATE INDEX webhook_endpoints_ws ON webhook_endpoints (workspace_id) WHERE deleted_at IS NULL;

-- `version` grows whenever what the rule evaluates changes (type or
-- conditions); the alerter then starts its windows afresh for that rule.
CREATE TABLE alert_rules (
  id                    uuid PRIMARY KEY,
  workspace_id          uuid NOT NULL REFERENCES workspaces(id),
  name                  text NOT NULL,
  rule_type             text NOT NULL,
  conditions            jsonb NOT NULL,
  channels              text[] NOT NULL,
  email_recipients      text[] NOT NULL DEFAULT '{}',
  webhook_endpoint_ids  uuid[],            -- NULL: every endpoint of the workspace
  cooldown_seconds      integer NOT NULL,
  enabled               boolean NOT NULL DEFAULT true,
  version               integer NOT NULL DEFAULT 1,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  deleted_at            timestamptz
);
CREATE INDEX alert_rules_ws ON alert_rules (workspace_id) WHERE deleted_at IS NULL;

-- One alert per rule and event at most: a replay after a crash cannot
-- raise the same alert twice.
CREATE TABLE alerts (
  id            uuid PRIMARY KEY,
  workspace_id  uuid NOT NULL,
  rule_id       uuid NOT NULL REFERENCES alert_rules(id),
  rule_name     text NOT NULL,
  rule_type     text NOT NULL,
  event_id      uuid NOT NULL,
  event_seq     bigint NOT NULL,
  reason        text NOT NULL,
  triggered_at  timestamptz NOT NULL,
  event         jsonb NOT NULL,   -- the event as stored, with hash and geolocation
  UNIQUE (rule_id, event_seq)
);
CREATE INDEX alerts_ws ON alerts (workspace_id, triggered_at, id);

-- The outbox: one row per alert and destination, written in the same
-- transaction as the alert, so a delivery exists exactly when its alert does.
-- `id` is also the Standard Webhooks `webhook-id` (receivers dedupe on it).
CREATE TABLE alert_deliveries (
  id                   uuid PRIMARY KEY,
  alert_id             uuid NOT NULL REFERENCES alerts(id),
  workspace_id         uuid NOT NULL,
  channel              text NOT NULL CHECK (channel IN ('email', 'webhook')),
  webhook_endpoint_id  uuid REFERENCES webhook_endpoints(id),
  recipients           text[],
  status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts             integer NOT NULL DEFAULT 0,
  next_attempt_at      timestamptz NOT NULL DEFAULT now(),
  lease_until          timestamptz,     -- a worker holds it until then
  last_status          integer,
  last_error           text,
  delivered_at         timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE alert_delivery_attempts (
  delivery_id  uuid NOT NULL REFERENCES alert_deliveries(id),
  attempt      integer NOT NULL,
  at           timestamptz NOT NULL DEFAULT now(),
  status       integer,
  error        text,
  duration_ms  integer NOT NULL,
  outcome      text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
  PRIMARY KEY (delivery_id, attempt)
);

-- The alerter's durable state. `last_seq` is the newest event of the
-- workspace whose effects (state, alerts, deliveries) are committed; it is
-- advanced by compare-and-set, so an instance that lost the partition in a
-- rebalance cannot commit over the new owner.
CREATE TABLE alerter_progress (
  workspace_id  uuid PRIMARY KEY,
  last_seq      bigint NOT NULL
);

-- Windows and "seen" sets, per rule and key (an actor, an actor and action,
-- or the workspace). cooldown_until is epoch milliseconds of received_at.
CREATE TABLE alerter_state (
  rule_id         uuid NOT NULL,
  key             text NOT NULL,
  workspace_id    uuid NOT NULL,
  rule_version    integer NOT NULL,
  state           jsonb,
  cooldown_until  bigint,
  PRIMARY KEY (rule_id, key)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON
  workspace_members, webhook_endpoints, alert_rules, alerts, alert_deliveries,
  alert_delivery_attempts, alerter_progress, alerter_state
  TO chainlog_app;

-- The query API filters by the enricher's country.
CREATE INDEX events_country ON events (workspace_id, ip_country, seq) WHERE ip_country IS NOT NULL;

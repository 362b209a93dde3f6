-- Exports, scheduled verification, retention with archives (issue 6).

-- One export job. The gateway inserts it (pending) and asks the exporter
-- through Kafka; the exporter writes the file and completes it.
CREATE TABLE exports (
  id            uuid PRIMARY KEY,
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  format        text NOT NULL CHECK (format IN ('csv', 'jsonl')),
  filters       jsonb NOT NULL,
  status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
  total_rows    bigint,
  file_size     bigint,
  sha256        text,
  location      text,            -- where the storage keeps the file (a key, not a URL)
  first_seq     bigint,
  last_seq      bigint,
  error         text,
  requested_by  text NOT NULL,
  lease_until   timestamptz,     -- the exporter working on it holds it until then
  created_at    timestamptz NOT NULL DEFAULT now(),
  started_at    timestamptz,
  completed_at  timestamptz,
  expires_at    timestamptz
);
CREATE INDEX exports_ws ON exports (workspace_id, created_at);
CREATE INDEX exports_running ON exports (workspace_id) WHERE status IN ('pending', 'processing');

-- Where a workspace's stored chain starts once retention removed its
-- oldest events: the seq and hash of the last archived event. Verification
-- starts from it. Written only by the retention role, in the transaction
-- that removes the rows.
CREATE TABLE chain_anchors (
  workspace_id  uuid PRIMARY KEY REFERENCES workspaces(id),
  seq           bigint NOT NULL,
  hash          bytea NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every archive file: a contiguous seq range of one workspace, one day.
CREATE TABLE archives (
  id               uuid PRIMARY KEY,
  workspace_id     uuid NOT NULL REFERENCES workspaces(id),
  day              date NOT NULL,
  first_seq        bigint NOT NULL,
  last_seq         bigint NOT NULL,
  first_prev_hash  bytea NOT NULL,
  last_hash        bytea NOT NULL,
  rows             bigint NOT NULL,
  location         text NOT NULL,
  sha256           text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, first_seq)
);

-- Scheduled verification: where each workspace's last pass ended, and
-- every run.
CREATE TABLE verify_progress (
  workspace_id   uuid PRIMARY KEY REFERENCES workspaces(id),
  last_seq       bigint NOT NULL,
  last_hash      bytea NOT NULL,
  last_full_at   timestamptz,
  last_run_at    timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE verifications (
  id              uuid PRIMARY KEY,
  workspace_id    uuid NOT NULL REFERENCES workspaces(id),
  kind            text NOT NULL CHECK (kind IN ('incremental', 'full')),
  started_at      timestamptz NOT NULL,
  finished_at     timestamptz NOT NULL,
  from_seq        bigint,
  to_seq          bigint,
  events_checked  bigint NOT NULL,
  valid           boolean NOT NULL,
  breaks          jsonb NOT NULL
);
CREATE INDEX verifications_ws ON verifications (workspace_id, started_at, id);

-- The retention role: the only one that may delete events, and only those
-- at or below the workspace's anchor (archived first). UPDATE and TRUNCATE
-- stay refused for everyone.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'chainlog_retention') THEN
    CREATE ROLE chainlog_retention LOGIN;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_user = 'chainlog_retention' AND OLD.seq <= (
       SELECT a.seq FROM chain_anchors a WHERE a.workspace_id = OLD.workspace_id) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit events are append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;

-- CSV cells: a string a spreadsheet would run as a formula gets a leading
-- quote (libs/common/exportformat.py says how a verifier undoes it).
CREATE FUNCTION chainlog_csv_safe(v text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN left(v, 1) IN ('=', '+', '-', '@', E'\t', E'\r', '''') THEN '''' || v ELSE v END $$;

-- Every workspace verifies on a schedule and alerts on a break by default.
INSERT INTO alert_rules (id, workspace_id, name, rule_type, conditions, channels, cooldown_seconds)
SELECT gen_random_uuid(), w.id, 'Chain integrity', 'chain_integrity', '{}'::jsonb,
       ARRAY['email', 'webhook'], 0
FROM workspaces w
WHERE NOT EXISTS (SELECT 1 FROM alert_rules r
                  WHERE r.workspace_id = w.id AND r.rule_type = 'chain_integrity');

GRANT SELECT, INSERT, UPDATE ON exports, verify_progress TO chainlog_app;
GRANT SELECT, INSERT ON verifications TO chainlog_app;
GRANT SELECT ON chain_anchors, archives TO chainlog_app;
GRANT SELECT, DELETE ON events TO chainlog_retention;
GRANT SELECT, INSERT, UPDATE ON chain_anchors TO chainlog_retention;
GRANT SELECT, INSERT ON archives TO chainlog_retention;
GRANT SELECT ON workspaces TO chainlog_retention;

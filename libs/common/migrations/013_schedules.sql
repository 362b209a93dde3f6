-- Scheduled exports and evidence packs, delivered to the workspace's own
-- S3-compatible bucket (issue 12; docs/schedules.md).
--
-- A schedule makes one job per complete period (daily, weekly, monthly, in
-- UTC): the exporter's scheduler (services/exporter/schedules.py) inserts a
-- pending export or evidence pack with the period it computed, requested by
-- 'schedule:<id>', and a run that remembers where the file goes. The jobs
-- run as any other (services/exporter/jobs.py); when one completes, its file
-- is put in the bucket and the run records the delivery.
CREATE TABLE schedules (
  id               uuid PRIMARY KEY,
  workspace_id     uuid NOT NULL REFERENCES workspaces(id),
  kind             text NOT NULL CHECK (kind IN ('export', 'evidence_pack')),
  cadence          text NOT NULL CHECK (cadence IN ('daily', 'weekly', 'monthly')),
  params           jsonb NOT NULL,   -- export: {format, filters}; evidence pack: {controls}
  destination      jsonb NOT NULL,   -- bucket, region, endpoint_url, prefix, access_key_id
  secrets_enc      bytea NOT NULL,   -- {secret_access_key}, sealed (libs/common/secretbox.py)
  created_by       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  disabled_at      timestamptz,
  -- The end of the last period a run was made for; NULL before the first.
  last_period_end  timestamptz,
  -- When the scheduler looks at it next: at once for a new schedule.
  next_run_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_ws ON schedules (workspace_id, created_at);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE disabled_at IS NULL;

-- One period of one schedule: its job and the delivery of the job's file.
-- UNIQUE (schedule_id, period_start): two schedulers can never make a
-- period twice, whatever the locks.
CREATE TABLE schedule_runs (
  id               uuid PRIMARY KEY,
  schedule_id      uuid NOT NULL REFERENCES schedules(id),
  workspace_id     uuid NOT NULL REFERENCES workspaces(id),
  kind             text NOT NULL CHECK (kind IN ('export', 'evidence_pack')),
  period_start     timestamptz NOT NULL,
  period_end       timestamptz NOT NULL,
  period_label     text NOT NULL,    -- 2026-11-27, 2026-W48, 2026-11: the object's name
  job_id           uuid NOT NULL,    -- the export or the evidence pack
  status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz,
  lease_until      timestamptz,      -- the exporter delivering it holds it until then
  object_key       text,
  sha256           text,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  UNIQUE (schedule_id, period_start),
  CHECK (period_start < period_end)
);
CREATE INDEX schedule_runs_pending ON schedule_runs (created_at) WHERE status = 'pending';

-- Which schedule made a job (NULL: requested through the API).
ALTER TABLE exports ADD COLUMN schedule_id uuid REFERENCES schedules(id);
ALTER TABLE evidence_packs ADD COLUMN schedule_id uuid REFERENCES schedules(id);

GRANT SELECT, INSERT, UPDATE ON schedules, schedule_runs TO chainlog_app;

-- Evidence packs (issue 10): a period's records for a SOC 2 review, as one
-- signed zip (docs/evidence-packs.md).
--
-- A pack is a job like an export (services/exporter/jobs.py): pending →
-- processing (under a lease) → completed | failed. The columns a pack shares
-- with an export have the same names, so one piece of code claims, renews,
-- completes and expires both. The exporter takes any pending row, whoever
-- inserted it: the gateway today; a scheduler later, which would add an
-- evidence_pack_schedules table and a schedule_id column here, and insert
-- pending rows with the period it computed (requested_by 'schedule:<id>').
CREATE TABLE evidence_packs (
  id            uuid PRIMARY KEY,
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  period_from   timestamptz NOT NULL,
  period_to     timestamptz NOT NULL,
  controls      text[] NOT NULL,
  status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
  total_rows    bigint,          -- the events in events.csv
  file_size     bigint,          -- the zip
  sha256        text,            -- of the zip
  location      text,            -- where the storage keeps the zip (a key, not a URL)
  first_seq     bigint,
  last_seq      bigint,
  error         text,
  requested_by  text NOT NULL,
  lease_until   timestamptz,     -- the exporter working on it holds it until then
  created_at    timestamptz NOT NULL DEFAULT now(),
  started_at    timestamptz,
  completed_at  timestamptz,
  expires_at    timestamptz,
  CHECK (period_from < period_to)
);
CREATE INDEX evidence_packs_ws ON evidence_packs (workspace_id, created_at);
-- The exporter polls for pending packs: this keeps the poll to the few.
CREATE INDEX evidence_packs_running ON evidence_packs (workspace_id)
  WHERE status IN ('pending', 'processing');

GRANT SELECT, INSERT, UPDATE ON evidence_packs TO chainlog_app;

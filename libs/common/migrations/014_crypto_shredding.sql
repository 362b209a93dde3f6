-- Erasure by crypto-shredding (issue 12; docs/privacy.md).
--
-- A workspace with privacy on has its personal fields sealed at ingest under
-- a per-subject key (libs/common/sealing.py); the chain hashes the sealed
-- text. Erasing a subject destroys its key: the events keep verifying and
-- their personal fields can no longer be opened.

-- NULL: privacy off. Otherwise {"fields", "metadata_keys", "subject", "erased_enrichment"}.
ALTER TABLE workspaces ADD COLUMN privacy jsonb;

-- One live key per subject; erasure sets wrapped to NULL and keeps the row,
-- so a value sealed under that kid reads "[erased]" and the receipt can name it.
-- A subject's next event after an erasure gets a new key.
CREATE TABLE subject_keys (
  kid           uuid PRIMARY KEY,
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  subject       text NOT NULL,
  wrapped       bytea,           -- the key sealed under the master key (SecretBox); NULL once erased
  created_at    timestamptz NOT NULL DEFAULT now(),
  erased_at     timestamptz,
  erasure_id    uuid,
  CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL))
);
CREATE UNIQUE INDEX subject_keys_live ON subject_keys (workspace_id, subject)
  WHERE erased_at IS NULL;
CREATE INDEX subject_keys_subject ON subject_keys (workspace_id, subject);

CREATE TABLE erasures (
  id              uuid PRIMARY KEY,
  workspace_id    uuid NOT NULL REFERENCES workspaces(id),
  subject         text NOT NULL,
  requested_by    text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  kids            uuid[] NOT NULL,
  events          bigint NOT NULL,
  enrichment      text NOT NULL CHECK (enrichment IN ('kept', 'dropped')),
  admin_event_id  uuid NOT NULL,
  receipt         text NOT NULL   -- the signed receipt, as handed out
);
CREATE INDEX erasures_ws ON erasures (workspace_id, created_at);

GRANT SELECT, INSERT, UPDATE ON subject_keys, erasures TO chainlog_app;

-- Events stay append-only, with one more exception: clearing the unhashed
-- geolocation of an erased subject's events (erased_enrichment = 'drop').
-- Every other column, the hashed body above all, must stay as it was.
CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_user = 'chainlog_retention' AND OLD.seq <= (
       SELECT a.seq FROM chain_anchors a WHERE a.workspace_id = OLD.workspace_id) THEN
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND NEW.ip_country IS NULL AND NEW.ip_city IS NULL
     AND to_jsonb(NEW) - 'ip_country' - 'ip_city' = to_jsonb(OLD) - 'ip_country' - 'ip_city' THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit events are append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
GRANT UPDATE (ip_country, ip_city) ON events TO chainlog_app;

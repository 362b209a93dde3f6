-- Issue 7: every new checkpoint also goes out of the operator's database,
-- to the log streams and webhook endpoints that ask for it (docs/proofs.md,
-- "Keeping a witness").

-- A webhook endpoint may receive `checkpoint.signed` besides alerts.
ALTER TABLE webhook_endpoints ADD COLUMN checkpoints boolean NOT NULL DEFAULT false;

-- The delivery outbox carries either an alert or a checkpoint.
ALTER TABLE alert_deliveries ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE alert_deliveries ADD COLUMN checkpoint_id uuid REFERENCES checkpoints(id);
ALTER TABLE alert_deliveries ADD CONSTRAINT alert_deliveries_one_subject
  CHECK ((alert_id IS NULL) <> (checkpoint_id IS NULL));

-- A log stream that includes checkpoints: the newest one it has sent.
ALTER TABLE log_stream_cursors ADD COLUMN last_checkpoint uuid;

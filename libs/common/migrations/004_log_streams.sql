-- Log streams: every event forwarded to the customer's SIEM, each stream
-- with its own durable cursor.

CREATE TABLE log_streams (
  id                    uuid PRIMARY KEY,
  workspace_id          uuid NOT NULL REFERENCES workspaces(id),
  name                  text NOT NULL,
  type                  text NOT NULL,
  config                jsonb NOT NULL,        -- without secrets
  secrets_enc           bytea,                 -- the secret fields, sealed (libs/common/secretbox.py)
  filter                jsonb NOT NULL DEFAULT '{}',
  enabled               boolean NOT NULL DEFAULT true,
  status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'error')),
  last_error            text,
  last_error_at         timestamptz,
  consecutive_failures  integer NOT NULL DEFAULT 0,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  deleted_at            timestamptz
);
CREATE INDEX log_streams_ws ON log_streams (workspace_id) WHERE deleted_at IS NULL;

-- The last seq delivered (or skipped by the filter), and which streamer
-- holds the stream: a lease renewed with every batch, so two streamers
-- never send the same stream at once and a dead one's streams move on.
CREATE TABLE log_stream_cursors (
  stream_id    uuid PRIMARY KEY REFERENCES log_streams(id),
  last_seq     bigint NOT NULL DEFAULT 0,
  delivered    bigint NOT NULL DEFAULT 0,
  owner        text,
  lease_until  timestamptz,
  updated_at   timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON log_streams, log_stream_cursors TO chainlog_app;

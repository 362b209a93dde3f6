-- Issue 7: a Merkle tree per workspace over the chained events, and signed checkpoints.

-- Every node of every perfect subtree (level 0: the leaves), written once.
CREATE TABLE merkle_nodes (
  workspace_id  uuid     NOT NULL,
  level         smallint NOT NULL,
  idx           bigint   NOT NULL,
  hash          bytea    NOT NULL,
  PRIMARY KEY (workspace_id, level, idx)
);

-- Where each workspace's tree has got to: its size and right edge.
CREATE TABLE merkle_state (
  workspace_id  uuid PRIMARY KEY REFERENCES workspaces(id),
  size          bigint NOT NULL,
  frontier      bytea  NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The log's signing key: one per deployment, the private half sealed with
-- the secret box; generated on first start unless given.
CREATE TABLE log_keys (
  id           smallint PRIMARY KEY CHECK (id = 1),
  name         text  NOT NULL,
  public_key   bytea NOT NULL,
  private_enc  bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE checkpoints (
  id            uuid PRIMARY KEY,
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  size          bigint NOT NULL,
  root          bytea  NOT NULL,
  note          text   NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkpoints_ws ON checkpoints (workspace_id, created_at);

GRANT SELECT, INSERT ON merkle_nodes, checkpoints, log_keys TO chainlog_app;
GRANT SELECT, INSERT, UPDATE ON merkle_state TO chainlog_app;

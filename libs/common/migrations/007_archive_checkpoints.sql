-- Archives carry the signed checkpoint that covers them (docs/proofs.md):
-- retention reads it when it writes each manifest.
GRANT SELECT ON checkpoints TO chainlog_retention;

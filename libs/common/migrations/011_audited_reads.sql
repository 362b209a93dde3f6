-- Audited reads (issue 12; docs/audited-reads.md).
--
-- Whether the gateway records this workspace's reads of its audit log as
-- admin.read.* events in its chain. NULL: never set, the deployment's
-- default applies (CHAINLOG_READ_AUDIT_DEFAULT, true unless an operator
-- says otherwise). Setting it is an admin event (admin.workspace.updated).
ALTER TABLE workspaces ADD COLUMN audit_reads boolean;

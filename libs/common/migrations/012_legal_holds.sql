-- Legal holds (issue 12; docs/legal-holds.md).
--
-- A hold names events by a filter; while it is active (released_at IS NULL)
-- retention keeps the events it matches (archived all the same) and erasure
-- refuses the subjects it names. A hold is never edited: it is released and
-- a new one created, so what was held, from when to when, stays on record.
CREATE TABLE legal_holds (
  id              uuid PRIMARY KEY,
  workspace_id    uuid NOT NULL REFERENCES workspaces(id),
  name            text NOT NULL,
  -- Keys of libs/common/holds.py FILTER_KEYS only, checked by the API;
  -- from/to are RFC 3339 in UTC.
  filter          jsonb NOT NULL,
  reason          text NOT NULL,
  created_by      text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  released_at     timestamptz,
  released_by     text,
  release_reason  text,
  CHECK ((released_at IS NULL) = (released_by IS NULL)),
  CHECK ((released_at IS NULL) = (release_reason IS NULL))
);
CREATE INDEX legal_holds_ws ON legal_holds (workspace_id, created_at);
CREATE INDEX legal_holds_active ON legal_holds (workspace_id) WHERE released_at IS NULL;

-- THE definition of "a hold's filter matches an event": every query that
-- asks (retention, the trigger below, the API's counts, erasure's check)
-- goes through it. Every key present must match; `action` is the glob of
-- libs/common/patterns.py (`*` is any run). A pattern holds only letters,
-- digits, '.', '_', '-' and '*' (the API checks it), so escaping '_' and
-- turning '*' into '%' makes it a LIKE pattern. `from` is inclusive, `to`
-- exclusive, on occurred_at: the event query API's rule.
CREATE FUNCTION chainlog_hold_matches(f jsonb, e events) RETURNS boolean
  LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT (f->>'actor_id' IS NULL OR e.actor_id = f->>'actor_id')
      AND (f->>'tenant_id' IS NULL OR e.tenant_id = f->>'tenant_id')
      AND (f->>'resource' IS NULL OR e.resource = f->>'resource')
      AND (f->>'resource_id' IS NULL OR e.resource_id = f->>'resource_id')
      AND (f->>'action' IS NULL
           OR e.action LIKE replace(replace(f->>'action', '_', '\_'), '*', '%'))
      AND (f->>'from' IS NULL OR e.occurred_at >= (f->>'from')::timestamptz)
      AND (f->>'to' IS NULL OR e.occurred_at < (f->>'to')::timestamptz) $$;

-- An event is held while any active hold of its workspace matches it.
CREATE FUNCTION chainlog_event_held(e events) RETURNS boolean
  LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT EXISTS (SELECT 1 FROM legal_holds h
                  WHERE h.workspace_id = e.workspace_id AND h.released_at IS NULL
                    AND chainlog_hold_matches(h.filter, e)) $$;

-- The database keeps a held event even from the retention role. A trigger of
-- its own, beside events_append_only (which still refuses UPDATE and
-- TRUNCATE and lets only the retention role delete at or below the anchor):
-- a DELETE must pass both. Held rows below the anchor simply stay; nothing
-- refuses a row for being there.
CREATE FUNCTION events_keep_held() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF chainlog_event_held(OLD) THEN
    RAISE EXCEPTION 'event % of workspace % is under a legal hold', OLD.seq, OLD.workspace_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END $$;

CREATE TRIGGER events_keep_held BEFORE DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_keep_held();

GRANT SELECT, INSERT, UPDATE ON legal_holds TO chainlog_app;
GRANT SELECT ON legal_holds TO chainlog_retention;

-- Issue 9: what the console's home page charts, counted as events are stored
-- (services/exporter/pipeline.py counts exactly the rows it inserts), so the
-- chart reads a few hundred rows instead of a day of events.
CREATE TABLE event_counts_hourly (
  workspace_id  uuid        NOT NULL,
  hour          timestamptz NOT NULL,
  category      text        NOT NULL,
  country       text        NOT NULL DEFAULT '',   -- '' when not geolocated
  count         bigint      NOT NULL,
  PRIMARY KEY (workspace_id, hour, category, country)
);
GRANT SELECT, INSERT, UPDATE ON event_counts_hourly TO chainlog_app;

-- The last 30 days of what is already stored.
INSERT INTO event_counts_hourly (workspace_id, hour, category, country, count)
SELECT workspace_id, date_trunc('hour', received_at, 'UTC'),
       coalesce(action_category, split_part(action, '.', 1)), coalesce(ip_country, ''), count(*)
FROM events WHERE received_at > now() - interval '30 days'
GROUP BY 1, 2, 3, 4;

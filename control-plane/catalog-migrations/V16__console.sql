-- An operator may ask a running fleet migration run to halt (from the console or the API): the
-- process running it starts no tenant once it sees the request; running tenants finish. Resuming
-- the run clears the request.
ALTER TABLE control.migration_runs ADD COLUMN halt_requested_by text;

-- Tenants by status and plan, once an hour (the latest count of the hour wins), kept 90 days:
-- the console's picture of the fleet over time. Written by `tenantctl serve`.
CREATE TABLE control.fleet_snapshots (
    hour    timestamptz PRIMARY KEY,
    counts  jsonb NOT NULL
);

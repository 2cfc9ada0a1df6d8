-- Fleet migrations, continued: the catalog records each tenant's schema version, so a run skips
-- tenants already at its target without connecting to them and `migrate plan` can show pending
-- versions from one query; runs can halt (a failed canary wave, too many failures), and items
-- can end as drift (the tenant's history differs from the files: not migrated).

-- The newest tenant migration applied, as provisioning or the last fleet run recorded it; NULL
-- when not known yet (a tenant from before this column, a failed first migration).
ALTER TABLE control.tenants ADD COLUMN schema_version bigint;
CREATE INDEX tenants_schema_version ON control.tenants (schema_version) WHERE status IN ('active', 'suspended');

ALTER TABLE control.migration_runs DROP CONSTRAINT migration_runs_state_check;
-- halted: stopped early (the canary wave failed, or more tenants failed than --max-failures);
-- its tenants not done stay pending, for `resume`.
ALTER TABLE control.migration_runs ADD CONSTRAINT migration_runs_state_check
    CHECK (state IN ('running', 'completed', 'failed', 'halted'));
ALTER TABLE control.migration_runs ADD COLUMN halt_reason text;

ALTER TABLE control.migration_items DROP CONSTRAINT migration_items_state_check;
-- drift: the tenant's applied migrations differ from the files (a changed checksum, a missing
-- file); it was not touched. lock_timeout: it stayed locked by another session through every
-- retry. Both count as not done (resume tries them again).
ALTER TABLE control.migration_items ADD CONSTRAINT migration_items_state_check
    CHECK (state IN ('pending', 'running', 'done', 'failed', 'drift', 'lock_timeout'));
-- The wave the tenant belongs to: 0 for the canary wave, 1 for the rest.
ALTER TABLE control.migration_items ADD COLUMN wave smallint NOT NULL DEFAULT 1;

-- The fleet ledger: one row per fleet migration run and one item per tenant in it, so a run's
-- progress and failures can be watched while it goes and a killed run can be resumed without
-- redoing what is done.

CREATE TABLE control.migration_runs (
    id              uuid PRIMARY KEY,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    target_version  bigint NOT NULL,
    -- Which tenants ({"tenant": …, "plan": …}) and how ({"concurrency": …}).
    selection       jsonb NOT NULL,
    options         jsonb NOT NULL,
    -- running: under way, or interrupted (its process died: no one holds the run lock);
    -- completed: every tenant migrated; failed: finished with failed tenants.
    state           text NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    tenants         integer NOT NULL
);
CREATE INDEX migration_runs_created ON control.migration_runs (created_at DESC);

CREATE TABLE control.migration_items (
    run_id          uuid NOT NULL REFERENCES control.migration_runs (id) ON DELETE CASCADE,
    tenant_id       uuid NOT NULL,
    slug            text NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    from_version    bigint,
    to_version      bigint,
    attempts        integer NOT NULL DEFAULT 0,
    duration_ms     bigint,
    error           text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, tenant_id)
);
CREATE INDEX migration_items_state ON control.migration_items (run_id, state);

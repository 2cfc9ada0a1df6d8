-- Tenant moves: a tenant's data copied to another placement (cluster, schema or own database)
-- with logical replication, then switched over. One row per move; at most one running per
-- tenant. What the move creates is named from its id, so a crash at any step can find it.
CREATE TABLE control.tenant_moves (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES control.tenants (id),
    state           text NOT NULL DEFAULT 'running'
                      CHECK (state IN ('running', 'done', 'aborted', 'failed')),
    -- The last step done (NULL: none yet).
    step            text,
    requested_by    text NOT NULL,
    -- Where the tenant was when the move started.
    from_cluster    text NOT NULL,
    from_isolation  text NOT NULL CHECK (from_isolation IN ('schema', 'database')),
    from_schema     text NOT NULL,
    from_database   text,
    from_role       text NOT NULL,
    from_secret_ref text,
    -- Where it goes.
    to_cluster      text NOT NULL REFERENCES control.clusters (name),
    to_isolation    text NOT NULL CHECK (to_isolation IN ('schema', 'database')),
    to_schema       text NOT NULL,
    to_database     text,
    to_role         text NOT NULL,
    to_secret_ref   text NOT NULL,
    schema_version  bigint,
    -- The source is dropped right after the switch rather than kept for the retention period.
    drop_source     boolean NOT NULL DEFAULT false,
    abort_requested boolean NOT NULL DEFAULT false,
    last_error      text,
    -- How long the tenant's new requests were held at the switch.
    pause_ms        integer,
    switched_at     timestamptz,
    source_dropped_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE UNIQUE INDEX tenant_moves_one_running ON control.tenant_moves (tenant_id) WHERE state = 'running';
CREATE INDEX tenant_moves_tenant ON control.tenant_moves (tenant_id, id);

-- While set, routers hold the tenant's new requests (at most until then): a move is switching
-- it to its new placement.
ALTER TABLE control.tenants ADD COLUMN paused_until timestamptz;

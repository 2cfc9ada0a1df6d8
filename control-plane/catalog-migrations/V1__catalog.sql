-- The control plane's catalog. Runs with search_path = control (see catalog::migrate).

CREATE TABLE control.clusters (
    name            text PRIMARY KEY,
    -- NULL: the catalog's own database holds this cluster's tenants.
    admin_secret_ref text,
    capacity        integer NOT NULL DEFAULT 10000 CHECK (capacity > 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO control.clusters (name) VALUES ('default');

CREATE TABLE control.tenants (
    id                      uuid PRIMARY KEY,
    slug                    text NOT NULL,
    display_name            text NOT NULL,
    plan                    text NOT NULL,
    template                text NOT NULL,
    template_version        integer NOT NULL DEFAULT 1,
    isolation               text NOT NULL DEFAULT 'schema' CHECK (isolation IN ('schema', 'database')),
    cluster                 text NOT NULL REFERENCES control.clusters (name),
    schema_name             text NOT NULL,
    database_name           text,
    role_name               text NOT NULL,
    secret_ref              text,
    credential_version      integer NOT NULL DEFAULT 1,
    status                  text NOT NULL CHECK (status IN
                              ('provisioning', 'active', 'suspended', 'deprovisioning', 'deleted', 'failed')),
    provision_step          text,
    failed_step             text,
    last_error              text,
    config                  jsonb NOT NULL DEFAULT '{}',
    pool_size               integer NOT NULL DEFAULT 2 CHECK (pool_size > 0),
    rate_limit_per_second   integer,
    statement_timeout_ms    integer,
    billing_customer_id     text,
    billing_subscription_id text,
    billing_event_at        timestamptz,
    generation              bigint NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz
);
-- Deleted tenants stay as tombstones; their slug, role and subscription may be reused.
CREATE UNIQUE INDEX tenants_live_slug ON control.tenants (slug) WHERE status <> 'deleted';
CREATE UNIQUE INDEX tenants_live_role ON control.tenants (cluster, role_name) WHERE status <> 'deleted';
CREATE UNIQUE INDEX tenants_live_subscription ON control.tenants (billing_subscription_id)
    WHERE billing_subscription_id IS NOT NULL AND status <> 'deleted';
CREATE INDEX tenants_status_plan ON control.tenants (status, plan, slug);
CREATE INDEX tenants_cluster ON control.tenants (cluster);

CREATE TABLE control.domains (
    host        text PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES control.tenants (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('subdomain', 'custom')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_tenant ON control.domains (tenant_id);

CREATE TABLE control.billing_events (
    event_id        text PRIMARY KEY,
    type            text NOT NULL,
    event_created   timestamptz,
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    outcome         text,
    error           text
);

-- Durable work queue: workers claim rows with FOR UPDATE SKIP LOCKED and hold the lock while the
-- job runs, so a crashed worker's job becomes claimable again when its transaction dies.
CREATE TABLE control.jobs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,
    tenant_id   uuid REFERENCES control.tenants (id),
    payload     jsonb NOT NULL DEFAULT '{}',
    state       text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'done', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 5,
    run_after   timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX jobs_ready ON control.jobs (run_after, id) WHERE state = 'queued';
CREATE INDEX jobs_tenant ON control.jobs (tenant_id, id);

CREATE TABLE control.audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    tenant_id   uuid,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant ON control.audit_log (tenant_id, at);

-- The local secret store (SECRETS_BACKEND=local): AES-256-GCM, key held by the operator.
CREATE TABLE control.secrets (
    name        text PRIMARY KEY,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- How the router's PostgreSQL-protocol door lends the tenant's server connections to its
-- clients: `transaction` (a connection per transaction) or `session` (a connection for as long
-- as the client stays connected). Set from the plan template's `limits.pool_mode`.
ALTER TABLE control.tenants ADD COLUMN pool_mode text NOT NULL DEFAULT 'transaction'
    CHECK (pool_mode IN ('transaction', 'session'));

-- How a move copies the tenant's data: logical replication, or pg_dump/pg_restore with the
-- tenant's writes waiting for the copy (for servers without logical replication).
ALTER TABLE control.tenant_moves
    ADD COLUMN method text NOT NULL DEFAULT 'replication' CHECK (method IN ('replication', 'dump'));

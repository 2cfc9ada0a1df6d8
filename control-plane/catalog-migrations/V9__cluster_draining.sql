-- A cluster being drained (`tenantctl clusters drain`) takes no new tenants; a removed one
-- (`clusters remove`, once empty) is kept for the tenants' tombstones and moves that name it.
ALTER TABLE control.clusters
    ADD COLUMN draining boolean NOT NULL DEFAULT false,
    ADD COLUMN removed_at timestamptz;

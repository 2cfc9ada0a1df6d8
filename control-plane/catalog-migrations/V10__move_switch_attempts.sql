-- How many times a move's switch was tried and undone (it gives up, and rolls back, after a
-- few: each attempt pauses the tenant and ends its sessions).
ALTER TABLE control.tenant_moves ADD COLUMN switch_attempts integer NOT NULL DEFAULT 0;

-- While set, a move by dump is copying the tenant under locks: routers hold the tenant's
-- writes (they would wait on the locks holding a server connection each) and serve its reads.
ALTER TABLE control.tenants ADD COLUMN writes_paused boolean NOT NULL DEFAULT false;

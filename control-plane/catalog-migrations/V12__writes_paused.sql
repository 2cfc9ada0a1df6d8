-- While in the future, a move by dump is copying the tenant under locks: routers hold the
-- tenant's writes (they would wait on the locks holding a server connection each) and serve its
-- reads. A lease: the mover renews it while it copies, so that a mover gone (killed, cut off)
-- holds the tenant's writes no longer than the lease.
ALTER TABLE control.tenants ADD COLUMN writes_paused_until timestamptz;

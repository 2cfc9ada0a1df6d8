-- Deprovisioning: when the tenant's data may be dropped, and where its archive went.
ALTER TABLE control.tenants
    ADD COLUMN deprovision_after timestamptz,
    ADD COLUMN archive_path text;

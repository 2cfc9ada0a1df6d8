-- Routers write every access by an internal user (a token with the tenant claim `*`) to the
-- audit log, in batches, through this function: the routers' catalog role may run it and write
-- nothing else, and what it writes is an access entry only (action `tenant.access`, actor
-- `user:<id>`), never another kind of audit entry.
CREATE FUNCTION control.log_internal_access(ats timestamptz[], users text[], tenants uuid[], details jsonb[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(ats) <> cardinality(users) OR cardinality(ats) <> cardinality(tenants)
       OR cardinality(ats) <> cardinality(details) THEN
        RAISE EXCEPTION 'log_internal_access: arrays of different lengths';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(details) d
                WHERE d->>'role' IS DISTINCT FROM 'internal-admin' AND d->>'role' IS DISTINCT FROM 'internal-viewer') THEN
        RAISE EXCEPTION 'log_internal_access: only internal roles are recorded';
    END IF;
    INSERT INTO control.audit_log (at, actor, action, tenant_id, detail)
    SELECT a.at, 'user:' || a.usr, 'tenant.access', a.tenant, a.detail
      FROM unnest(ats, users, tenants, details) AS a(at, usr, tenant, detail);
END
$$;
REVOKE ALL ON FUNCTION control.log_internal_access(timestamptz[], text[], uuid[], jsonb[]) FROM PUBLIC;
CREATE INDEX audit_log_actor ON control.audit_log (actor, id);

-- Routers write every access by an internal user (a token with the tenant claim `*`) to the
-- audit log, in batches, through this function: the routers' catalog role may run it and write
-- nothing else, and what it writes is an access entry only (action `tenant.access`, actor
-- `user:<id>`, an internal role, its door, read or write, the request), dated within the last
-- day and no later than now, for a tenant the catalog has: never another kind of audit entry.
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
    IF cardinality(ats) > 1000 THEN
        RAISE EXCEPTION 'log_internal_access: at most 1000 entries at a time';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(users, details) AS e(usr, d)
                WHERE d->>'role' NOT IN ('internal-admin', 'internal-viewer')
                   OR d->>'door' IS DISTINCT FROM 'sql' AND d->>'door' IS DISTINCT FROM 'proxy'
                   OR d->>'access' IS DISTINCT FROM 'read' AND d->>'access' IS DISTINCT FROM 'write'
                   OR d->>'role' IS NULL OR length(coalesce(d->>'request', '')) > 1024
                   OR length(coalesce(usr, '')) NOT BETWEEN 1 AND 256
                   OR (SELECT count(*) FROM jsonb_object_keys(d)) > 4) THEN
        RAISE EXCEPTION 'log_internal_access: only internal users'' accesses are recorded';
    END IF;
    -- The time is the router's, within the last day and not in the future; the tenant must be one.
    INSERT INTO control.audit_log (at, actor, action, tenant_id, detail)
    SELECT greatest(least(a.at, now()), now() - interval '1 day'), 'user:' || a.usr, 'tenant.access', a.tenant, a.detail
      FROM unnest(ats, users, tenants, details) WITH ORDINALITY AS a(at, usr, tenant, detail, n)
     WHERE EXISTS (SELECT 1 FROM control.tenants t WHERE t.id = a.tenant)
     ORDER BY a.n;
END
$$;
REVOKE ALL ON FUNCTION control.log_internal_access(timestamptz[], text[], uuid[], jsonb[]) FROM PUBLIC;
CREATE INDEX audit_log_actor ON control.audit_log (actor, id);

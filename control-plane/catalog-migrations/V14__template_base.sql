-- A tenant's profile (`config`) is built from its plan template and then edited. To carry a new
-- template version into it without losing those edits (a three-way merge), the catalog keeps
-- the template config the profile was last built from. Tenants from before have none: their
-- first merge takes the template file's config as the base if the file is still at the version
-- they were built from, else none (every key both they and the template have, with different
-- values, is then a conflict). A tenant may opt out of `tenantctl templates upgrade` (it is then upgraded only when
-- named, or by a plan change).
ALTER TABLE control.tenants
    ADD COLUMN template_config jsonb,
    ADD COLUMN template_upgrades boolean NOT NULL DEFAULT true;
-- Tenants created from now on start from nothing: their first merge (at provisioning) takes the
-- whole template config. Only the rows above keep NULL (base unknown).
ALTER TABLE control.tenants ALTER COLUMN template_config SET DEFAULT '{}'::jsonb;

-- A tenant's profile (`config`) is built from its plan template and then edited. To carry a new
-- template version into it without losing those edits (a three-way merge), the catalog keeps
-- the template config the profile was last built from. Tenants from before have none: their
-- first merge treats every key both they and the template have, with different values, as a
-- conflict. A tenant may opt out of `tenantctl templates upgrade` (it is then upgraded only when
-- named, or by a plan change).
ALTER TABLE control.tenants
    ADD COLUMN template_config jsonb,
    ADD COLUMN template_upgrades boolean NOT NULL DEFAULT true;

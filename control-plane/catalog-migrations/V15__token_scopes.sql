-- Operator tokens get a scope and may expire. `read_only` sees everything and changes nothing,
-- `operator` runs the fleet (tenants, migrations, moves), `admin` also manages tokens. Tokens
-- made before scopes existed could do everything the API offered: they become `admin`, so no
-- running automation loses a right it had; tokens made from now on name their scope.
ALTER TABLE control.operator_tokens
    ADD COLUMN scope text NOT NULL DEFAULT 'admin'
        CHECK (scope IN ('read_only', 'operator', 'admin')),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN created_by text;
ALTER TABLE control.operator_tokens ALTER COLUMN scope DROP DEFAULT;

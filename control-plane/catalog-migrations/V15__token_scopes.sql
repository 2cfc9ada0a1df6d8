-- Operator tokens get a scope and may expire. `read_only` sees everything and changes nothing,
-- `operator` runs the fleet (tenants, migrations, moves), `admin` also manages tokens. Tokens
-- made before scopes existed could do everything the API offered then, which is what
-- `operator` may do now: they become `operator` (no running automation loses a right it had,
-- and none gains the right to mint tokens). Tokens made from now on name their scope.
ALTER TABLE control.operator_tokens
    ADD COLUMN scope text NOT NULL DEFAULT 'operator'
        CHECK (scope IN ('read_only', 'operator', 'admin')),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN created_by text;
ALTER TABLE control.operator_tokens ALTER COLUMN scope DROP DEFAULT;

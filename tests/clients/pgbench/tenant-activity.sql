-- One pgbench transaction on a table every tenant's migrations create (migrations/V1__init.sql):
-- a row written and two reads, in one transaction. pgbench sets :client_id; the test sets :run
-- (-D run=N) to tell its runs apart.
BEGIN;
INSERT INTO activity (verb, subject) VALUES ('pgbench', (:run)::text || '/' || (:client_id)::text);
SELECT count(*) FROM activity WHERE verb = 'pgbench';
SELECT current_user, current_schema();
END;

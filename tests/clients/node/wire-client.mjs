// node-postgres (`pg`) through the router's PostgreSQL listener, as an application uses it.
// Two clients of one tenant, A and B, take turns: who they are, parameterised queries, a
// transaction committed and one rolled back, settings A makes and B must never see, what a
// tenant is refused (another tenant's schema, SET ROLE), and last a named prepared statement
// (`{ name: 'by-id', ... }`) reused across transactions by both, each with its own text; then
// `@prisma/adapter-pg` (Prisma's adapter for node-postgres) running interactive transactions.
// Prints one JSON object of what the clients saw; the Rust test
// (tests/e2e/tests/e2e/postgres_clients.rs) says what they should have seen. An unexpected
// error stops the run and is reported in `error` with the step it happened in.
//
// Environment:
//   CLIENT_CONFIG   JSON of pg.Client's settings (host, port, user, password, database,
//                   options naming the tenant)
//   OTHER_SCHEMA    another tenant's schema, which these clients must not read

import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { interactiveTransactions } from './prisma-adapter.mjs';

const { CLIENT_CONFIG, OTHER_SCHEMA } = process.env;
if (!CLIENT_CONFIG || !OTHER_SCHEMA) {
  console.error('CLIENT_CONFIG and OTHER_SCHEMA must be set');
  process.exit(2);
}
const config = JSON.parse(CLIENT_CONFIG);
const ROUNDS = 3;
const SETTING = '4242ms';

const report = { client: 'node-postgres', error: null };
let step = 'connect';

/** The SQLSTATE of a query's failure, `allowed` if it succeeded. */
async function refusal(promise) {
  try {
    await promise;
    return 'allowed';
  } catch (error) {
    return error.code ?? error.message;
  }
}

const a = new pg.Client({ ...config, application_name: 'node-a' });
const b = new pg.Client({ ...config, application_name: 'node-b' });
try {
  await a.connect();
  await b.connect();

  step = 'identity';
  report.identity = [
    (await a.query('SELECT current_user AS user, current_schema() AS schema')).rows[0],
    (await b.query('SELECT current_user AS user, current_schema() AS schema, $1::text AS echo', ['b']))
      .rows[0],
  ];

  step = 'parameters';
  const ids = [];
  for (const n of [0, 1, 2]) {
    const { rows } = await a.query('INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id', [
      `node-${n}@example.test`,
      `node user ${n}`,
    ]);
    ids.push(rows[0].id);
  }
  report.sum = (await b.query('SELECT $1::int + $2::int AS sum', [2, 40])).rows[0].sum;

  step = 'transactions';
  const insert = 'INSERT INTO users (email, name) VALUES ($1, $2)';
  const count = async (email) =>
    Number((await a.query('SELECT count(*) AS n FROM users WHERE email = $1', [email])).rows[0].n);
  await a.query('BEGIN');
  await a.query(insert, ['node-kept@example.test', 'kept']);
  const inside = await count('node-kept@example.test');
  await a.query('COMMIT');
  await b.query('BEGIN');
  await b.query(insert, ['node-gone@example.test', 'gone']);
  await b.query('ROLLBACK');
  report.transactions = {
    inside,
    committed: await count('node-kept@example.test'),
    rolled_back: await count('node-gone@example.test'),
  };

  // A `SET` query outside a transaction is A's for the rest of its session; so is
  // `set_config(…, false)` in a parameterised query, unless it is refused. B sees neither.
  step = 'settings';
  await a.query(`SET statement_timeout = '${SETTING}'`);
  report.set_config = await refusal(
    a.query("SELECT set_config('application_name', $1, false)", ['node-a-renamed']),
  );
  const show =
    "SELECT current_setting('statement_timeout') AS timeout, current_setting('application_name') AS name";
  const own = [];
  const other = [];
  for (let round = 0; round < ROUNDS; round++) {
    await a.query('BEGIN');
    own.push(Object.values((await a.query(show)).rows[0]));
    await a.query('COMMIT');
    other.push(Object.values((await b.query(show)).rows[0]));
  }
  report.settings = { own, other };

  step = 'refusals';
  report.refusals = {
    other_schema: await refusal(a.query(`SELECT * FROM ${OTHER_SCHEMA}.users`)),
    other_schema_extended: await refusal(a.query(`SELECT * FROM ${OTHER_SCHEMA}.users WHERE id = $1`, [1])),
    set_role: await refusal(a.query('SET ROLE postgres')),
    set_role_extended: await refusal(a.query({ text: 'SET ROLE postgres', queryMode: 'extended' })),
  };
  report.refusals.usable_after = (await a.query('SELECT 1 AS one')).rows[0].one;

  // A refused statement fails its transaction, as any error does in PostgreSQL: what the
  // transaction did before is not committed.
  step = 'refused_in_transaction';
  await a.query('BEGIN');
  await a.query(insert, ['node-refused@example.test', 'refused']);
  await refusal(a.query('SET ROLE postgres'));
  await refusal(a.query('COMMIT'));
  report.refused_in_transaction = await count('node-refused@example.test');

  // The same named statement in several transactions: prepared once on each client, then
  // only bound and executed. Both clients name theirs `by-id`, with different text.
  step = 'named_statements';
  const byId = { a: [], b: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const id = ids[round % ids.length];
    await a.query('BEGIN');
    byId.a.push(
      (await a.query({ name: 'by-id', text: 'SELECT email FROM users WHERE id = $1', values: [id] })).rows[0].email,
    );
    await a.query('COMMIT');
    await b.query('BEGIN');
    byId.b.push(
      (await b.query({ name: 'by-id', text: 'SELECT name FROM users WHERE id = $1', values: [id] })).rows[0].name,
    );
    await b.query('COMMIT');
  }
  // And outside a transaction.
  byId.a.push((await a.query({ name: 'by-id', text: 'SELECT email FROM users WHERE id = $1', values: [ids[0]] })).rows[0].email);
  report.named_statements = byId;

  step = 'prisma';
  report.prisma = await interactiveTransactions(new PrismaPg({ ...config, max: 2 }), 'pg');
} catch (error) {
  report.error = { step, sqlstate: error.code ?? null, message: String(error.message ?? error) };
} finally {
  await Promise.allSettled([a.end(), b.end()]);
}
console.log(JSON.stringify(report));

// Neon's serverless driver (`@neondatabase/serverless`) `Pool` and `Client` over WebSocket,
// against the router's `/v2` as an application uses them against Neon, and
// `@prisma/adapter-neon` on top of them: only the endpoint settings change (where the
// WebSocket goes, and `ws://` instead of `wss://`). Prints one JSON
// object of what the clients saw; the Rust test (tests/e2e/tests/e2e/postgres_websocket.rs)
// says what they should have seen. An unexpected error stops the run and is reported in
// `error` with the step it happened in.
//
// Environment:
//   ROUTER_WS      the router's HTTP listener, host:port
//   DATABASE_URL   the tenant's connection string, as the application is given it
//   NAME_TENANT    how the router learns the tenant:
//                    `host`    the WebSocket request's Host header is the connection string's
//                              host (what it is when the router is reached by that name);
//                    `address` the request goes to the router's own address, and the
//                              driver's `?address=<host>:<port>` names the tenant
//   MODE           `session`: the whole run below; `connect`: one Client connects and runs
//                  `SELECT 1`, and the report says whether it could (or its SQLSTATE);
//                  `drain`: a Pool client begins a transaction and inserts a row, prints
//                  `in transaction`, waits for a line on its standard input, then commits
//   OTHER_SCHEMA   (session) another tenant's schema, which these clients must not read

import { Client, Pool, neonConfig } from '@neondatabase/serverless';
import { PrismaNeon } from '@prisma/adapter-neon';
import { interactiveTransactions } from './prisma-adapter.mjs';
import WebSocket from 'ws';

const { ROUTER_WS, DATABASE_URL, NAME_TENANT, MODE, OTHER_SCHEMA } = process.env;
if (!ROUTER_WS || !DATABASE_URL || !['host', 'address'].includes(NAME_TENANT) || !MODE) {
  console.error('ROUTER_WS, DATABASE_URL, NAME_TENANT (host|address) and MODE must be set');
  process.exit(2);
}
const tenantHost = new URL(DATABASE_URL).hostname;

// The endpoint settings, and nothing else: the driver's defaults otherwise (it pipelines the
// startup message and the password, and coalesces its writes).
neonConfig.useSecureWebSocket = false;
neonConfig.pipelineTLS = false;
if (NAME_TENANT === 'host') {
  // Node cannot resolve the tenant's name here: connect to the router's address, and send the
  // name in the Host header as a resolver would have it.
  neonConfig.wsProxy = () => `${ROUTER_WS}/v2`;
  neonConfig.webSocketConstructor = class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { headers: { Host: tenantHost } });
    }
  };
} else {
  neonConfig.wsProxy = (host, port) => `${ROUTER_WS}/v2?address=${host}:${port}`;
  neonConfig.webSocketConstructor = WebSocket;
}

/** The SQLSTATE of a promise's failure (or its message), `allowed` if it succeeded. */
async function refusal(promise) {
  try {
    await promise;
    return 'allowed';
  } catch (error) {
    return error.code ?? error.message;
  }
}

const report = { mode: MODE, nameTenant: NAME_TENANT, error: null };
let step = 'connect';

async function connectOnly() {
  const client = new Client(DATABASE_URL);
  client.on('error', () => {});
  report.connect = await refusal(
    (async () => {
      await client.connect();
      await client.query('SELECT 1');
    })(),
  );
  await client.end().catch(() => {});
}

async function session() {
  const pool = new Pool({ connectionString: DATABASE_URL, max: 2 });
  try {
    step = 'identity';
    report.identity = (await pool.query('SELECT current_user AS user, current_schema() AS schema')).rows[0];

    step = 'rolled back';
    const email = `ws-rollback-${process.pid}@example.test`;
    const count = async (queryable, address) =>
      Number((await queryable.query('SELECT count(*) AS n FROM users WHERE email = $1', [address])).rows[0].n);
    const a = await pool.connect();
    try {
      await a.query('BEGIN');
      const { rows } = await a.query('INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id', [email, 'ws']);
      report.rolledBack = { insertedId: rows[0].id !== undefined, seenInside: await count(a, email) };
      await a.query('ROLLBACK');
      report.rolledBack.seenAfter = await count(a, email);
    } finally {
      a.release();
    }

    step = 'committed';
    const kept = `ws-commit-${process.pid}@example.test`;
    const b = await pool.connect();
    try {
      await b.query('BEGIN');
      await b.query('INSERT INTO users (email, name) VALUES ($1, $2)', [kept, 'ws']);
      report.committed = { inTransaction: (await b.query('SELECT 1 AS one')).rows[0].one === 1 };
      await b.query('COMMIT');
    } finally {
      b.release();
    }
    // A second client, on a WebSocket of its own, sees the committed row.
    const second = new Client(DATABASE_URL);
    await second.connect();
    report.committed.seenBySecondClient = await count(second, kept);

    step = 'client';
    report.client = (await second.query('SELECT $1::int + 1 AS answer', [41])).rows[0].answer;
    await second.end();

    step = 'isolation';
    report.otherSchema = await refusal(pool.query(`SELECT count(*) FROM ${OTHER_SCHEMA}.users`));
    report.setRole = await refusal(pool.query('SET ROLE postgres'));

    step = 'prisma';
    report.prisma = await interactiveTransactions(new PrismaNeon({ connectionString: DATABASE_URL }), 'ws');

    step = 'wrong password';
    const wrong = new URL(DATABASE_URL);
    wrong.password = `${wrong.password}x`;
    const intruder = new Client(wrong.toString());
    intruder.on('error', () => {});
    // The driver's connect() resolves as soon as it has sent the password (it does not wait
    // for the answer): the refusal comes with the first query.
    report.wrongPassword = await refusal(
      (async () => {
        await intruder.connect();
        await intruder.query('SELECT 1');
      })(),
    );
    await intruder.end().catch(() => {});
  } finally {
    await pool.end();
  }
}

async function drain() {
  const pool = new Pool({ connectionString: DATABASE_URL, max: 1 });
  pool.on('error', () => {});
  const client = await pool.connect();
  client.on('error', () => {});
  try {
    step = 'begin';
    await client.query('BEGIN');
    await client.query('INSERT INTO users (email, name) VALUES ($1, $2)', [`ws-drain-${process.pid}@example.test`, 'ws']);
    console.log('in transaction');
    await new Promise((resolve) => process.stdin.once('data', resolve));
    process.stdin.destroy();
    step = 'commit';
    report.commit = await refusal(client.query('COMMIT'));
  } finally {
    client.release();
    await pool.end().catch(() => {});
  }
}

try {
  await { connect: connectOnly, session, drain }[MODE]();
} catch (error) {
  report.error = `${step}: ${error.code ?? ''} ${error.message}`;
}
console.log(JSON.stringify(report));

// A Prisma driver adapter driven as Prisma Client drives it (its driver-adapter interface:
// Prisma Client sends BEGIN through `startTransaction`, then the statements and COMMIT or
// ROLLBACK as queries, then ends the transaction object): an interactive transaction rolled
// back, then a serializable one committed. No Prisma engine or generated client is needed.
// Used by neon-websocket.mjs (`@prisma/adapter-neon`, over WebSocket) and wire-client.mjs
// (`@prisma/adapter-pg`, over the PostgreSQL listener).

const text = { scalarType: 'string', arity: 'scalar' };

/**
 * Runs the two transactions on the adapter `factory` connects; returns what was seen:
 * `{ inserted: 1, seenInside: 1, seenAfterRollback: 0, seenAfterCommit: 1 }` when all is well.
 * `tag` makes the row's address unique to the caller.
 */
export async function interactiveTransactions(factory, tag) {
  const adapter = await factory.connect();
  const count = async (queryable, address) =>
    (
      await queryable.queryRaw({
        sql: 'SELECT count(*)::int AS n FROM users WHERE email = $1',
        args: [address],
        argTypes: [text],
      })
    ).rows[0][0];
  const insert = (queryable, address) =>
    queryable.executeRaw({
      sql: 'INSERT INTO users (email, name) VALUES ($1, $2)',
      args: [address, 'prisma'],
      argTypes: [text, text],
    });
  const seen = {};
  try {
    const email = `prisma-${tag}-${process.pid}@example.test`;
    const rolledBack = await adapter.startTransaction();
    seen.inserted = await insert(rolledBack, email);
    seen.seenInside = await count(rolledBack, email);
    await rolledBack.executeRaw({ sql: 'ROLLBACK', args: [], argTypes: [] });
    await rolledBack.rollback();
    seen.seenAfterRollback = await count(adapter, email);

    const committed = await adapter.startTransaction('SERIALIZABLE');
    await insert(committed, email);
    await committed.executeRaw({ sql: 'COMMIT', args: [], argTypes: [] });
    await committed.commit();
    seen.seenAfterCommit = await count(adapter, email);
  } finally {
    await adapter.dispose();
  }
  return seen;
}

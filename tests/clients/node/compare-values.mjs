// Runs the same queries through the router's `/sql` with Neon's own driver
// (`@neondatabase/serverless`) and against PostgreSQL directly with node-postgres (`pg`), and
// compares what the two clients hand back. Exits 1 printing every difference.
//
// Environment:
//   ROUTER_SQL_URL   the router's endpoint, e.g. http://127.0.0.1:8080/sql
//   ROUTER_HOST      the tenant's host name the router resolves (its subdomain)
//   NEON_URL         the tenant's connection string, as the driver is given it
//   PG_URL           the same tenant's credentials, straight to PostgreSQL
//
// Besides the driver (which always asks for raw text output), the router's other mode is
// checked too: without `Neon-Raw-Text-Output` it answers as Neon does, booleans, int2/int4 and
// finite floats as JSON values, json/jsonb parsed, arrays as JSON arrays of the same, and
// everything else as PostgreSQL's text output.

import http from 'node:http';
import { isDeepStrictEqual, inspect } from 'node:util';
import { neon, neonConfig } from '@neondatabase/serverless';
import pg from 'pg';
import { parse as parseArray } from 'postgres-array';

const { ROUTER_SQL_URL, ROUTER_HOST, NEON_URL, PG_URL } = process.env;
for (const [name, value] of Object.entries({ ROUTER_SQL_URL, ROUTER_HOST, NEON_URL, PG_URL })) {
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
}
const endpoint = new URL(ROUTER_SQL_URL);

/** POSTs to the router with the tenant's Host header (its subdomain need not resolve here). */
function post(body, headers) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: endpoint.hostname,
        port: endpoint.port,
        path: endpoint.pathname,
        method: 'POST',
        headers: { ...headers, host: ROUTER_HOST, 'content-type': 'application/json' },
      },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks) }));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

neonConfig.fetchEndpoint = () => ROUTER_SQL_URL;
neonConfig.fetchFunction = async (_url, init) => {
  const { status, body } = await post(init.body, init.headers);
  return new Response(body, { status, headers: { 'content-type': 'application/json' } });
};

// Each query is one row of values of a kind, named so a difference says where it is.
const QUERIES = {
  'issue example': `select array[1,2] as ints`,
  integers: `select 1::int2 as i2, -2::int4 as i4, 9007199254740993::int8 as i8, 0::int8 as zero,
    (-32768)::int2 as min2, 2147483647::int4 as max4, 42::oid as oid`,
  floats: `select 1.5::float4 as f4, 0.1::float8 as f8, 1e300::float8 as big, 1e-7::float8 as tiny,
    'NaN'::float8 as nan, 'Infinity'::float4 as inf, '-Infinity'::float8 as ninf, (-0.0)::float8 as nzero,
    3.4028235e38::float4 as f4max, 123456789.125::float8 as f8mid`,
  numeric: `select 12.340::numeric as n, -0.000012::numeric as small, 'NaN'::numeric as nan,
    1e40::numeric as big, 0::numeric(10,3) as zero3, 123456789012345678901234567890.5::numeric as wide`,
  money: `select 12.34::money as m, (-1234567.89)::money as neg, 0::money as zero`,
  text: `select 'hé'::text as t, ''::text as empty, 'a,b'::varchar as comma, 'x'::char(3) as padded,
    'q"u''o\\te{}'::text as special, 'NULL'::text as null_word, ' spaced ' as spaced, 'line
break' as newline, 'ü😀'::varchar(10) as unicode, 'pg_class'::name as nm, 'c'::"char" as ch`,
  bytea: `select '\\x01ff'::bytea as b, ''::bytea as empty, 'abc'::bytea as ascii`,
  bool: `select true as t, false as f, null::bool as n`,
  json: `select '{"a":[1,2],"b":null}'::json as j, '{"b":1,"a":"x"}'::jsonb as jb, '[1,"2",{"3":[]}]'::jsonb as arr,
    '"str"'::jsonb as str, 'null'::jsonb as jnull, '3.10'::json as num, ' {"spaced" : true} '::json as spaced`,
  uuid: `select 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as u`,
  dates: `select '2024-02-29'::date as d, 'infinity'::date as inf, '1999-12-31'::date as y2k,
    '0044-03-15 BC'::date as bc`,
  times: `select '04:05:06.789'::time as t, '23:59:59'::time as t2, '04:05:06+02'::timetz as tz,
    '2024-01-02 03:04:05'::timestamp as ts, '2024-01-02 03:04:05.123456'::timestamp as ts_us,
    '2024-01-02 03:04:05.5+00'::timestamptz as tstz, '2024-06-01 12:00:00-07'::timestamptz as tstz_west,
    'infinity'::timestamptz as inf, '-infinity'::timestamp as ninf`,
  intervals: `select '1 year 2 months 3 days 04:05:06.789'::interval as i, '-1 day'::interval as neg,
    '0'::interval as zero, '36 hours'::interval as hours, '-00:00:01.5'::interval as frac`,
  ranges: `select int4range(1, 10) as r4, int8range(null, 5) as r8, numrange(1.5, 2.5, '[]') as rn,
    daterange('2024-01-01', '2024-02-01') as rd, tstzrange('2024-01-01 00:00+00', null) as rtz,
    tsrange('2024-01-01 00:00', '2024-01-02 00:00') as rts, 'empty'::int4range as empty`,
  'other types': `select '192.168.0.1/24'::inet as inet, '10.0.0.0/8'::cidr as cidr, '::1'::inet as v6,
    '08:00:2b:01:02:03'::macaddr as mac, point(1.5, 2) as pt, B'1010'::bit(4) as bits,
    row(1, 'a b', null) as rec, 'a fat cat'::tsvector as tsv`,
  nulls: `select null::int as i, null::text as t, null::int[] as ai, null::jsonb as j, null as unknown`,
  'integer arrays': `select array[1,2]::int4[] as a4, array[1,null,3] as with_null, '{}'::int4[] as empty,
    array[null]::int[] as only_null, array[1::int2, 2::int2] as a2, array[9007199254740993::int8] as a8,
    array[[1,2],[3,4]] as grid, array[[[1],[2]],[[3],[null::int]]] as cube, '[0:1]={7,8}'::int[] as lower_bound,
    array[1,2]::oid[] as oids`,
  'float arrays': `select array[1.5::float4, 'NaN', 'Infinity'] as f4, array[0.1::float8, null, -0.0] as f8`,
  'numeric arrays': `select array[12.340, null, 'NaN']::numeric[] as n, array[[1.5,2],[3,4.25]]::numeric[] as grid,
    array[1.5, -2]::money[] as money`,
  'text arrays': `select array['a,b', 'c"d', 'e\\f', '{g}', '', 'NULL', null, ' h ', 'ü', 'i j', 'k''l']::text[] as t,
    array['x', 'y']::varchar[] as v, array['ab']::char(3)[] as ch, array[['a','b'],['c',null]] as grid,
    '{}'::text[] as empty, array['pg_class']::name[] as names`,
  'bytea arrays': `select array['\\x01ff'::bytea, null, ''::bytea] as b`,
  'bool arrays': `select array[true, false, null] as b`,
  'json arrays': `select array['{"a":1}'::json, null, '[1,"x,y"]'] as j,
    array['{"b":"q\\"uote"}'::jsonb, '"s"', 'null'] as jb`,
  'uuid arrays': `select array['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, null] as u`,
  'date and time arrays': `select array['2024-02-29'::date, null, 'infinity'] as d,
    array['04:05:06.789'::time] as t, array['04:05:06+02'::timetz] as ttz,
    array['2024-01-02 03:04:05.5'::timestamp, null] as ts,
    array['2024-01-02 03:04:05.5+00'::timestamptz, '2024-06-01 12:00:00-07'] as tstz`,
  'interval arrays': `select array['1 year 2 months 3 days 04:05:06.789'::interval, null, '-1 day'] as i`,
  'range arrays': `select array[int4range(1, 10), 'empty', null] as r, array[numrange(1.5, 2.5)] as rn,
    array[tstzrange('2024-01-01 00:00+00', '2024-01-02 00:00+00')] as rtz`,
  'other arrays': `select array['192.168.0.1/24'::inet, '::1'] as inet, array[point(1, 2)] as pts,
    array['08:00:2b:01:02:03'::macaddr] as macs, array[row(1, 'a')] as recs`,
  'several rows': `select g as n, g::text || ',' as t, array[g, null] as a from generate_series(1, 3) g`,
  'no rows': `select 1 as one where false`,
};

// Queries with parameters: [sql, params].
const PARAMETERIZED = {
  'array parameters': [`select $1::int[] as a, $2::text[] as t, $3::jsonb as j`, [[1, 2], ['a,b', null, 'c"d'], { k: [1] }]],
  'scalar parameters': [`select $1::numeric as n, $2::bytea as b, $3::timestamptz as ts, $4::bool as flag`,
    ['12.50', '\\x01ff', '2024-01-02T03:04:05.500Z', true]],
};

/**
 * A value as plain data: the driver bundles its own copies of node-postgres's parsers, so an
 * interval from one client is an instance of another class than the same interval from the
 * other. Compared by class name and contents instead.
 */
function plain(value) {
  if (Array.isArray(value)) return value.map(plain);
  if (value === null || typeof value !== 'object' || value instanceof Date) return value;
  if (Buffer.isBuffer(value)) return { Buffer: value.toString('hex') };
  const entries = Object.entries(value).map(([k, v]) => [k, plain(v)]);
  const name = Object.getPrototypeOf(value)?.constructor?.name;
  return name && name !== 'Object' ? { [name]: Object.fromEntries(entries) } : Object.fromEntries(entries);
}

const differences = [];
function compare(label, got, expected) {
  if (!isDeepStrictEqual(plain(got), plain(expected))) {
    differences.push(
      `${label}\n  router (Neon driver): ${inspect(got, { depth: 6, breakLength: Infinity })}` +
        `\n  PostgreSQL (pg):     ${inspect(expected, { depth: 6, breakLength: Infinity })}`,
    );
  }
}

/** Neon's conversion of PostgreSQL's text output, in its default (not raw text) mode. */
function neonDefault(text, typeId, elementOf) {
  if (text === null) return null;
  const element = elementOf.get(typeId);
  if (element !== undefined) return parseArray(text, (item) => neonDefault(item, element, elementOf));
  switch (typeId) {
    case 16: // bool
      return text === 't';
    case 21: // int2
    case 23: // int4
      return Number.parseInt(text, 10);
    case 700: // float4
    case 701: { // float8
      const value = Number.parseFloat(text);
      return Number.isFinite(value) ? value : text;
    }
    case 114: // json
    case 3802: // jsonb
      return JSON.parse(text);
    default:
      return text;
  }
}

const sql = neon(NEON_URL);
const client = new pg.Client({ connectionString: PG_URL });
await client.connect();
// Every value as PostgreSQL's text output (node-postgres parses none of them).
const asText = { getTypeParser: () => (value) => value };
const arrayTypes = await client.query(`select oid::int, typelem::int from pg_type where typcategory = 'A'`);
const elementOf = new Map(arrayTypes.rows.map((row) => [row.oid, row.typelem]));

async function check(name, query, params) {
  let expected;
  try {
    expected = await client.query({ text: query, values: params });
  } catch (err) {
    differences.push(`${name}: PostgreSQL refused the query: ${err.message}`);
    return;
  }
  const expectedArrays = await client.query({ text: query, values: params, rowMode: 'array' });
  const text = await client.query({ text: query, values: params, rowMode: 'array', types: asText });
  try {
    // The driver's default: rows as objects, parsed by the driver from the router's answer.
    compare(`${name} (default)`, await sql.query(query, params), expected.rows);
    if (params.length === 0) {
      // The tagged-template form, as in the example.
      const strings = Object.assign([query], { raw: [query] });
      compare(`${name} (sql\`\`)`, await sql(strings), expected.rows);
    }
    // arrayMode and fullResults: rows as arrays, with the fields and counts.
    const full = await sql.query(query, params, { arrayMode: true, fullResults: true });
    compare(`${name} (arrayMode, fullResults): rows`, full.rows, expectedArrays.rows);
    compare(
      `${name} (arrayMode, fullResults): fields`,
      full.fields.map((f) => [f.name, f.dataTypeID]),
      expected.fields.map((f) => [f.name, f.dataTypeID]),
    );
    compare(`${name} (arrayMode, fullResults): rowCount`, full.rowCount, expected.rowCount);
    compare(`${name} (arrayMode, fullResults): command`, full.command, expected.command);
  } catch (err) {
    differences.push(`${name}: the driver failed: ${err.message}`);
  }
  // The router's answers themselves: raw text is PostgreSQL's text output, NULL is null; the
  // other mode is Neon's typed JSON.
  const types = expected.fields.map((f) => f.dataTypeID);
  for (const rawText of [true, false]) {
    const headers = { 'neon-connection-string': NEON_URL, 'neon-array-mode': 'true' };
    if (rawText) headers['neon-raw-text-output'] = 'true';
    const { status, body } = await post(JSON.stringify({ query, params }), headers);
    const label = `${name} (router, ${rawText ? 'raw text' : 'typed JSON'})`;
    if (status !== 200) {
      differences.push(`${label}: HTTP ${status}: ${body}`);
      continue;
    }
    const rows = JSON.parse(body).rows;
    const want = rawText ? text.rows : text.rows.map((row) => row.map((v, i) => neonDefault(v, types[i], elementOf)));
    compare(label, rows, want);
  }
}

for (const [name, query] of Object.entries(QUERIES)) await check(name, query, []);
for (const [name, [query, params]] of Object.entries(PARAMETERIZED)) await check(name, query, params);

// A batch (a transaction) through the driver.
try {
  const [a, b] = await sql.transaction([sql`select array[1,null] as a`, sql`select ${['x,y', null]}::text[] as t`]);
  compare('transaction', [a, b], [[{ a: [1, null] }], [{ t: ['x,y', null] }]]);
} catch (err) {
  differences.push(`transaction: the driver failed: ${err.message}`);
}
await client.end();

const checks = Object.keys(QUERIES).length + Object.keys(PARAMETERIZED).length + 1;
if (differences.length > 0) {
  console.error(`${differences.length} difference(s) between the router and PostgreSQL:\n`);
  console.error(differences.join('\n\n'));
  process.exit(1);
}
console.log(`all ${checks} queries agree (driver default, sql\`\`, arrayMode/fullResults, both router modes)`);

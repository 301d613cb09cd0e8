/**
 * Shadow databases for the compatibility run: a throw-away database on the same server with
 * the real database's current schema and a small sample of its rows, so that pending
 * migrations and both releases can be tried without touching the real one.
 *
 * PostgreSQL: schema by `pg_dump --schema-only` piped into `psql` (pre-data, then rows, then
 * post-data so sampled rows are checked by the real constraints), sequences set to the real
 * values, rows whose foreign-key parents were not sampled removed before the constraints return.
 * MySQL/MariaDB: `SHOW CREATE TABLE` replayed with foreign-key checks off, rows by
 * `INSERT … SELECT … LIMIT`, then stored functions and procedures, views, and last the triggers
 * (so that copying the sample fires none), each with the `sql_mode` it was created under.
 *
 * Must never write to the real database, and must leave no shadow behind: `drop()` is always
 * called by the caller, and leftovers of a crashed run are swept by name before the next one.
 */
import { spawn } from 'node:child_process';
import { withoutCutoverSecrets } from '../lib/child-env.ts';
import { randomBytes } from 'node:crypto';
import { CutoverError } from '../lib/errors.ts';
import type { DbEngine } from '../config/database.ts';
import { connect, databaseOf, dbErrorText, quoteIdent, redactUrl, withDatabase, type DbConnection } from './db.ts';

/** Marks shadow database names: `<db>_cshadow_<hex>`; leftovers with it are swept. */
export const SHADOW_MARK = '_cshadow_';
/** PostgreSQL and MySQL cap identifiers at 63 and 64 characters. */
const MAX_DB_NAME = 63;
/** pg_dump / psql may run this long: 2 minutes. */
const DUMP_TIMEOUT_MS = 120_000;

export interface Shadow {
  name: string;
  url: string;
  /** Rows copied per table (only tables with rows). */
  rows: Record<string, number>;
  /** What could not be copied, and why (the run goes on without it). */
  notes: string[];
  drop(): Promise<void>;
}

export interface ShadowOptions {
  engine: DbEngine;
  /** The real database. */
  url: string;
  sampleRows: number;
  /** Tables whose rows are not copied (the tracking table). */
  skipRowsOf: string[];
}

export function shadowNameFor(realDb: string): string {
  const suffix = `${SHADOW_MARK}${randomBytes(4).toString('hex')}`;
  return `${realDb.slice(0, MAX_DB_NAME - suffix.length)}${suffix}`.toLowerCase();
}

/** Create the shadow database. On any failure the partial shadow is dropped before the error is thrown. */
export async function createShadow(o: ShadowOptions): Promise<Shadow> {
  const realDb = databaseOf(o.url);
  const name = shadowNameFor(realDb);
  const admin = await connect(o.engine, o.url);
  let created = false;
  const drop = async (): Promise<void> => {
    if (!created) return;
    await dropDatabase(admin, name);
    created = false;
  };
  const shadow: Shadow = { name, url: withDatabase(o.url, name), rows: {}, notes: [], drop: async () => { try { await drop(); } finally { await admin.close(); } } };
  try {
    await sweepLeftovers(admin, realDb);
    if (o.engine === 'postgres') {
      await admin.query(`CREATE DATABASE ${quoteIdent('postgres', name)} TEMPLATE template0`);
      created = true;
      await copyPostgres(o, shadow, admin, async () => {
        // Sampled rows broke a constraint the sample could not satisfy: start over, schema only.
        await dropDatabase(admin, name);
        await admin.query(`CREATE DATABASE ${quoteIdent('postgres', name)} TEMPLATE template0`);
      });
    } else {
      const [cs] = await admin.query<{ c: string; k: string }>('SELECT DEFAULT_CHARACTER_SET_NAME AS c, DEFAULT_COLLATION_NAME AS k FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [realDb]);
      await admin.query(`CREATE DATABASE ${quoteIdent('mysql', name)}${cs ? ` CHARACTER SET ${cs.c} COLLATE ${cs.k}` : ''}`);
      created = true;
      await copyMysql(o, shadow, realDb, name);
    }
    return shadow;
  } catch (err) {
    await shadow.drop().catch(() => undefined);
    throw err;
  }
}

/**
 * PostgreSQL: a second shadow, a file-level copy of `from` (`CREATE DATABASE … TEMPLATE`), cheap
 * next to a dump. Nobody may be connected to `from` while it is copied. Named like every shadow,
 * so a killed run's clone is swept with the rest.
 */
export async function cloneShadow(realUrl: string, from: Shadow): Promise<Shadow> {
  const name = shadowNameFor(databaseOf(realUrl));
  const admin = await connect('postgres', realUrl);
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent('postgres', name)} TEMPLATE ${quoteIdent('postgres', from.name)}`);
  } catch (err) {
    await admin.close();
    throw err;
  }
  return { name, url: withDatabase(realUrl, name), rows: from.rows, notes: [], drop: async () => { try { await dropDatabase(admin, name); } finally { await admin.close(); } } };
}

async function dropDatabase(admin: DbConnection, name: string): Promise<void> {
  if (admin.engine === 'postgres') {
    // WITH (FORCE), PostgreSQL 13+: ends sessions still connected (instances of the run that did not exit).
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent('postgres', name)} WITH (FORCE)`);
  } else {
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent('mysql', name)}`);
  }
}

/** Drop shadows of this database left by a run that was killed (only one deployment runs at a time). */
async function sweepLeftovers(admin: DbConnection, realDb: string): Promise<void> {
  const prefix = `${realDb.slice(0, MAX_DB_NAME - SHADOW_MARK.length - 8)}${SHADOW_MARK}`.toLowerCase();
  const rows = admin.engine === 'postgres'
    ? await admin.query<{ name: string }>('SELECT datname AS name FROM pg_database WHERE starts_with(datname, $1)', [prefix])
    : await admin.query<{ name: string }>('SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, ?) = ?', [prefix.length, prefix]);
  for (const r of rows) if (/[0-9a-f]{8}$/.test(r.name)) await dropDatabase(admin, r.name);
}

// ───────────────────────────── PostgreSQL ─────────────────────────────

async function copyPostgres(o: ShadowOptions, shadow: Shadow, _admin: DbConnection, recreate: () => Promise<void>): Promise<void> {
  await pgDumpInto(o.url, shadow.url, 'pre-data');
  if (o.sampleRows > 0) {
    const real = await connect('postgres', o.url);
    const copy = await connect('postgres', shadow.url);
    try {
      await copyPostgresRows(real, copy, o, shadow);
    } finally {
      await Promise.all([real.close(), copy.close()]);
    }
    try {
      await pgDumpInto(o.url, shadow.url, 'post-data');
      return;
    } catch (err) {
      shadow.notes.push(`sample rows dropped, schema only: ${(err as Error).message.split('\n')[0]}`);
      for (const k of Object.keys(shadow.rows)) delete shadow.rows[k];
      await recreate();
      await pgDumpInto(o.url, shadow.url, 'pre-data');
    }
  }
  await pgDumpInto(o.url, shadow.url, 'post-data');
}

/** `pg_dump --section=… | psql`: one section of the schema, replayed into the shadow; stops at the first error. */
function pgDumpInto(fromUrl: string, toUrl: string, section: 'pre-data' | 'post-data'): Promise<void> {
  return new Promise((resolve, reject) => {
    const dump = spawn('pg_dump', ['--schema-only', `--section=${section}`, '--no-owner', '--no-privileges', '--no-publications', '--no-subscriptions', '--dbname', fromUrl], { stdio: ['ignore', 'pipe', 'pipe'], env: withoutCutoverSecrets(process.env) });
    const load = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--dbname', toUrl], { stdio: ['pipe', 'ignore', 'pipe'], env: { ...withoutCutoverSecrets(process.env), PGOPTIONS: '-c client_min_messages=warning' } });
    let dumpErr = '';
    let loadErr = '';
    dump.stderr.on('data', (d: Buffer) => { dumpErr += d.toString(); });
    load.stderr.on('data', (d: Buffer) => { loadErr += d.toString(); });
    dump.stdout.pipe(load.stdin);
    load.stdin.on('error', () => undefined); // psql stopped early (ON_ERROR_STOP): its exit code says why
    const timer = setTimeout(() => { dump.kill('SIGKILL'); load.kill('SIGKILL'); }, DUMP_TIMEOUT_MS);
    let pending = 2;
    const codes: Record<string, number | null> = {};
    const fail = (what: string, err: Error) => { clearTimeout(timer); reject(new CutoverError('CUTOVER_ERR_MIGRATION', `shadow database: ${what} could not run (${err.message}); is the PostgreSQL client installed?`, { cause: err })); };
    dump.on('error', (e) => fail('pg_dump', e));
    load.on('error', (e) => fail('psql', e));
    const done = (who: string) => (code: number | null) => {
      codes[who] = code;
      if (--pending > 0) return;
      clearTimeout(timer);
      if (codes.pg_dump !== 0) reject(new CutoverError('CUTOVER_ERR_MIGRATION', `shadow database: pg_dump of ${redactUrl(fromUrl)} (${section}) failed: ${dumpErr.trim() || `exit ${codes.pg_dump}`}`));
      else if (codes.psql !== 0) reject(new CutoverError('CUTOVER_ERR_MIGRATION', `shadow database: replaying the ${section} schema failed: ${loadErr.trim() || `exit ${codes.psql}`}`));
      else resolve();
    };
    dump.on('close', done('pg_dump'));
    load.on('close', done('psql'));
  });
}

async function copyPostgresRows(real: DbConnection, copy: DbConnection, o: ShadowOptions, shadow: Shadow): Promise<void> {
  const tables = await real.query<{ schema: string; name: string }>(`
    SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2`);
  for (const t of tables) {
    const qualified = `${quoteIdent('postgres', t.schema)}.${quoteIdent('postgres', t.name)}`;
    const label = t.schema === 'public' ? t.name : `${t.schema}.${t.name}`;
    if (o.skipRowsOf.includes(t.name)) continue;
    try {
      const [{ rows }] = await real.query<{ rows: string }>(`SELECT coalesce(json_agg(s), '[]')::text AS rows FROM (SELECT * FROM ${qualified} LIMIT ${o.sampleRows}) s`);
      const n = (JSON.parse(rows) as unknown[]).length;
      if (n === 0) continue;
      const cols = await copy.query<{ name: string }>(`SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, [qualified]);
      const list = cols.map((c) => quoteIdent('postgres', c.name)).join(', ');
      await copy.query(`INSERT INTO ${qualified} (${list}) OVERRIDING SYSTEM VALUE SELECT ${list} FROM json_populate_recordset(NULL::${qualified}, $1::json)`, [rows]);
      shadow.rows[label] = n;
    } catch (err) {
      shadow.notes.push(`rows of ${label} not copied: ${dbErrorText(err)}`);
    }
  }
  // Sequences: new rows in the shadow must not collide with the copied ones.
  const seqs = await real.query<{ schema: string; name: string; last: string | null }>('SELECT schemaname AS schema, sequencename AS name, last_value::text AS last FROM pg_sequences');
  for (const s of seqs) {
    if (s.last === null) continue;
    await copy.query('SELECT setval($1::regclass, $2::bigint)', [`${quoteIdent('postgres', s.schema)}.${quoteIdent('postgres', s.name)}`, s.last]).catch((err: unknown) => {
      shadow.notes.push(`sequence ${s.schema}.${s.name} not set: ${dbErrorText(err)}`);
    });
  }
  await removeOrphans(real, copy);
}

/** Delete sampled rows whose foreign-key parent was not sampled, until none is left (chains of references). */
async function removeOrphans(real: DbConnection, copy: DbConnection): Promise<void> {
  const fks = await real.query<{ child: string; parent: string; ccols: string[]; pcols: string[] }>(`
    SELECT format('%I.%I', cn.nspname, cc.relname) AS child, format('%I.%I', pn.nspname, pc.relname) AS parent,
      (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) AS ccols,
      (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(con.confkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) AS pcols
    FROM pg_constraint con
    JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
    JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
    WHERE con.contype = 'f'`);
  if (fks.length === 0) return;
  for (let round = 0; round < 20; round++) {
    let removed = 0;
    for (const fk of fks) {
      const q = (c: string) => quoteIdent('postgres', c);
      const notNull = fk.ccols.map((c) => `c.${q(c)} IS NOT NULL`).join(' AND ');
      const match = fk.ccols.map((c, i) => `p.${q(fk.pcols[i])} = c.${q(c)}`).join(' AND ');
      const rows = await copy.query<{ n: string }>(`WITH d AS (DELETE FROM ${fk.child} c WHERE ${notNull} AND NOT EXISTS (SELECT 1 FROM ${fk.parent} p WHERE ${match}) RETURNING 1) SELECT count(*)::text AS n FROM d`);
      removed += Number(rows[0]?.n ?? 0);
    }
    if (removed === 0) return;
  }
}

// ───────────────────────────── MySQL / MariaDB ─────────────────────────────

async function copyMysql(o: ShadowOptions, shadow: Shadow, realDb: string, name: string): Promise<void> {
  const real = await connect('mysql', o.url);
  const copy = await connect('mysql', shadow.url);
  try {
    await copy.query('SET SESSION FOREIGN_KEY_CHECKS = 0');
    const objects = await real.query<{ name: string; type: string }>('SELECT TABLE_NAME AS name, TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME', [realDb]);
    const q = (n: string) => quoteIdent('mysql', n);
    for (const t of objects.filter((x) => x.type === 'BASE TABLE')) {
      const [row] = await real.query<Record<string, string>>(`SHOW CREATE TABLE ${q(realDb)}.${q(t.name)}`);
      await copy.query(row['Create Table']);
      if (o.sampleRows === 0 || o.skipRowsOf.includes(t.name)) continue;
      try {
        const cols = await real.query<{ c: string }>("SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND EXTRA NOT LIKE '%GENERATED%' ORDER BY ORDINAL_POSITION", [realDb, t.name]);
        const list = cols.map((c) => q(c.c)).join(', ');
        await copy.query(`INSERT INTO ${q(name)}.${q(t.name)} (${list}) SELECT ${list} FROM ${q(realDb)}.${q(t.name)} LIMIT ${o.sampleRows}`);
        const [count] = await copy.query<{ n: string | number }>(`SELECT COUNT(*) AS n FROM ${q(t.name)}`);
        if (Number(count.n) > 0) shadow.rows[t.name] = Number(count.n);
      } catch (err) {
        shadow.notes.push(`rows of ${t.name} not copied: ${dbErrorText(err)}`);
      }
    }
    // Routines before views and triggers: both may call them.
    await copyMysqlRoutines(real, copy, realDb, shadow);
    // Views may use each other: retry until no more can be created.
    let views = objects.filter((x) => x.type === 'VIEW');
    while (views.length > 0) {
      const failed: typeof views = [];
      let lastErr = '';
      for (const v of views) {
        const [row] = await real.query<Record<string, string>>(`SHOW CREATE VIEW ${q(realDb)}.${q(v.name)}`);
        const text = forShadow(row['Create View'], realDb);
        try { await copy.query(text); } catch (err) { failed.push(v); lastErr = dbErrorText(err); }
      }
      if (failed.length === views.length) {
        shadow.notes.push(`views not copied: ${failed.map((v) => v.name).join(', ')} (${lastErr})`);
        break;
      }
      views = failed;
    }
    // Triggers last: the sampled rows are in, and no trigger fired while they were copied.
    await copyMysqlTriggers(real, copy, realDb, shadow);
  } finally {
    await Promise.all([real.close(), copy.close()]);
  }
}

/** A `SHOW CREATE …` statement made to run in the shadow: no DEFINER (the shadow's creator owns it), no real-database qualifier. */
function forShadow(statement: string, realDb: string): string {
  return statement.replace(/\sDEFINER\s*=\s*(`[^`]*`|'[^']*'|[^\s@]+)@(`[^`]*`|'[^']*'|\S+)/i, '').replaceAll(`${quoteIdent('mysql', realDb)}.`, '');
}

/** Run `statement` under the sql_mode its object was created with (it decides how the body parses). */
async function underMode(copy: DbConnection, sqlMode: string | undefined, statement: string): Promise<void> {
  const [{ mode }] = await copy.query<{ mode: string }>('SELECT @@SESSION.sql_mode AS mode');
  if (sqlMode !== undefined) await copy.query('SET SESSION sql_mode = ?', [sqlMode]);
  try {
    await copy.query(statement);
  } finally {
    if (sqlMode !== undefined) await copy.query('SET SESSION sql_mode = ?', [mode]);
  }
}

async function copyMysqlRoutines(real: DbConnection, copy: DbConnection, realDb: string, shadow: Shadow): Promise<void> {
  const q = (n: string) => quoteIdent('mysql', n);
  const routines = await real.query<{ name: string; type: 'FUNCTION' | 'PROCEDURE' }>(
    "SELECT ROUTINE_NAME AS name, ROUTINE_TYPE AS type FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE') ORDER BY ROUTINE_TYPE, ROUTINE_NAME", [realDb]);
  const failed: string[] = [];
  let lastErr = '';
  for (const r of routines) {
    try {
      const [row] = await real.query<Record<string, string | null>>(`SHOW CREATE ${r.type} ${q(realDb)}.${q(r.name)}`);
      const text = row[r.type === 'FUNCTION' ? 'Create Function' : 'Create Procedure'];
      // NULL when the user may not read the body (neither its definer nor granted SHOW ROUTINE / SELECT on mysql.proc).
      if (!text) throw new Error('its body is not readable by this user');
      await underMode(copy, row.sql_mode ?? undefined, forShadow(text, realDb));
    } catch (err) {
      failed.push(`${r.type.toLowerCase()} ${r.name}`);
      lastErr = dbErrorText(err);
    }
  }
  if (failed.length > 0) shadow.notes.push(`routines not copied: ${failed.join(', ')} (${lastErr})`);
}

async function copyMysqlTriggers(real: DbConnection, copy: DbConnection, realDb: string, shadow: Shadow): Promise<void> {
  const q = (n: string) => quoteIdent('mysql', n);
  // ACTION_ORDER: several triggers on one table and event fire in the order they were created.
  const triggers = await real.query<{ name: string }>('SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER', [realDb]);
  const failed: string[] = [];
  let lastErr = '';
  for (const t of triggers) {
    try {
      const [row] = await real.query<Record<string, string | null>>(`SHOW CREATE TRIGGER ${q(realDb)}.${q(t.name)}`);
      const text = row['SQL Original Statement'];
      if (!text) throw new Error('its body is not readable by this user');
      await underMode(copy, row.sql_mode ?? undefined, forShadow(text, realDb));
    } catch (err) {
      failed.push(t.name);
      lastErr = dbErrorText(err);
    }
  }
  if (failed.length > 0) shadow.notes.push(`triggers not copied: ${failed.join(', ')} (${lastErr})`);
}

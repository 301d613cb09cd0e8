/** Throw-away databases on the machine's PostgreSQL and MariaDB for the migrations tests (random names, always dropped). */
import { randomBytes } from 'node:crypto';
import { connect, withDatabase, type DbConnection } from '../src/migrations/db.ts';
import type { DbEngine } from '../src/config/database.ts';
import { configYaml, type Ports } from './helpers.ts';

export const PG_ADMIN_URL = process.env.CUTOVER_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MYSQL_ADMIN_URL = process.env.CUTOVER_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

export interface TestDb {
  name: string;
  url: string;
  /** A connection to the test database. */
  db: DbConnection;
  drop(): Promise<void>;
}

/** Null (and the reason) when the server is not reachable: the test is skipped, not failed. */
export async function available(engine: DbEngine): Promise<string | null> {
  try {
    const c = await connect(engine, engine === 'postgres' ? PG_ADMIN_URL : MYSQL_ADMIN_URL);
    await c.close();
    return null;
  } catch (err) {
    return `${engine} is not reachable: ${(err as Error).message}`;
  }
}

export async function createTestDb(engine: DbEngine, prefix = 'cutover_t'): Promise<TestDb> {
  const adminUrl = engine === 'postgres' ? PG_ADMIN_URL : MYSQL_ADMIN_URL;
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = await connect(engine, adminUrl);
  await admin.query(`CREATE DATABASE ${name}`);
  const url = withDatabase(adminUrl, name);
  const db = await connect(engine, url);
  return {
    name, url, db,
    drop: async () => {
      await db.close();
      await admin.query(engine === 'postgres' ? `DROP DATABASE IF EXISTS ${name} WITH (FORCE)` : `DROP DATABASE IF EXISTS ${name}`);
      await admin.close();
    },
  };
}

/** Databases whose name starts with `prefix` (to prove shadows were dropped). */
export async function databasesLike(engine: DbEngine, prefix: string): Promise<string[]> {
  const admin = await connect(engine, engine === 'postgres' ? PG_ADMIN_URL : MYSQL_ADMIN_URL);
  try {
    const rows = engine === 'postgres'
      ? await admin.query<{ n: string }>('SELECT datname AS n FROM pg_database WHERE starts_with(datname, $1)', [prefix])
      : await admin.query<{ n: string }>('SELECT SCHEMA_NAME AS n FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, ?) = ?', [prefix.length, prefix]);
    return rows.map((r) => r.n);
  } finally {
    await admin.close();
  }
}

/** Column names of a table, in order. */
export async function columnsOf(db: DbConnection, table: string): Promise<string[]> {
  const rows = db.engine === 'postgres'
    ? await db.query<{ c: string }>("SELECT column_name AS c FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position", [table])
    : await db.query<{ c: string }>('SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION', [table]);
  return rows.map((r) => r.c);
}

/** A cutover.yaml whose instances get DATABASE_URL, with a `database:` section (`database` adds keys to it, `topLevel` adds sections). */
export function migrationsConfig(ports: Ports, url: string, database = '', topLevel = ''): string {
  return configYaml(ports, { instances: 1, startTimeout: '10s', keepFor: '10m' })
    .replace('    stopTimeout: 2s', `    stopTimeout: 2s\n    env:\n      DATABASE_URL: ${url}`)
    + `\n${topLevel}\ndatabase:\n  url: ${url}\n  migrations: ./migrations\n  engine: postgres\n${database}`;
}


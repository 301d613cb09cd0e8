/**
 * One small connection interface over the two engines (pg for PostgreSQL, mysql2 for MySQL and
 * MariaDB; both pure JavaScript), plus URL and database-name helpers. Owns nothing else: the
 * SQL the migration code runs is written per engine where it differs.
 * Must never log or return a URL with its password in it (use `redactUrl`).
 */
import pg from 'pg';
import mysql from 'mysql2/promise';
import { CutoverError } from '../lib/errors.ts';
import type { DbEngine } from '../config/database.ts';

/** Connecting to the database server may take this long before it is an error: 10 seconds. */
export const DB_CONNECT_TIMEOUT_MS = 10_000;

export interface DbConnection {
  readonly engine: DbEngine;
  /** Rows of a query; `params` are bound ($1… for PostgreSQL, ? for MySQL). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export async function connect(engine: DbEngine, url: string): Promise<DbConnection> {
  try {
    return engine === 'postgres' ? await connectPostgres(url) : await connectMysql(url);
  } catch (err) {
    throw new CutoverError('CUTOVER_ERR_MIGRATION', `cannot connect to the database at ${redactUrl(url)}: ${(err as Error).message}`, { cause: err, details: { url: redactUrl(url) } });
  }
}

async function connectPostgres(url: string): Promise<DbConnection> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: DB_CONNECT_TIMEOUT_MS, application_name: 'cutover' });
  // A dropped server connection surfaces as the next query's error; without a listener it would crash the daemon.
  client.on('error', () => undefined);
  await client.connect();
  return {
    engine: 'postgres',
    async query<T>(sql: string, params?: unknown[]): Promise<T[]> {
      const r = await client.query(sql, params);
      // Several statements in one simple query yield an array of results: return the last one's rows.
      const last = Array.isArray(r) ? (r as pg.QueryResult[])[r.length - 1] : r;
      return (last?.rows ?? []) as T[];
    },
    close: () => client.end().catch(() => undefined),
  };
}

async function connectMysql(url: string): Promise<DbConnection> {
  const conn = await mysql.createConnection({ uri: url.replace(/^mariadb:/, 'mysql:'), connectTimeout: DB_CONNECT_TIMEOUT_MS, timezone: 'Z', dateStrings: true, supportBigNumbers: true, bigNumberStrings: true });
  conn.on('error', () => undefined);
  return {
    engine: 'mysql',
    async query<T>(sql: string, params?: unknown[]): Promise<T[]> {
      // query(), not execute(): DDL and SET are not all preparable.
      const [rows] = await conn.query(sql, params);
      return (Array.isArray(rows) ? rows : []) as T[];
    },
    close: () => conn.end().catch(() => undefined),
  };
}

/** The database name in a URL's path (`postgres://h/shop` → `shop`). */
export function databaseOf(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (name === '') throw new CutoverError('CUTOVER_ERR_CONFIG', `database.url ${redactUrl(url)} names no database (expected …/DBNAME)`);
  return name;
}

/** The same URL pointing at another database on the same server. */
export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** Quote an identifier (`"x"` / `` `x` ``); a dotted name is quoted per part. */
export function quoteIdent(engine: DbEngine, name: string): string {
  const q = engine === 'postgres' ? '"' : '`';
  return name.split('.').map((part) => `${q}${part.replaceAll(q, q + q)}${q}`).join('.');
}

/** Bind placeholder number `i` (1-based). */
export function ph(engine: DbEngine, i: number): string {
  return engine === 'postgres' ? `$${i}` : '?';
}

/** The database error's text with its code and detail, for a person to read. */
export function dbErrorText(err: unknown): string {
  const e = err as { message?: string; code?: string; detail?: string; sqlMessage?: string };
  const msg = e.sqlMessage ?? e.message ?? String(err);
  return `${msg}${e.code ? ` (${e.code})` : ''}${e.detail ? `: ${e.detail}` : ''}`;
}

/**
 * The tracking table in the shared database (default `cutover_migrations`): one row per
 * migration file Cutover has applied, or holds as pending (contract files waiting for the old
 * release to be retired). It is the source of truth for what ran: it lives with the schema it
 * describes, so it survives a lost state directory and is visible to whoever runs the database.
 *
 * Also: running a file's statements (each file in a transaction where the engine allows), and a
 * lock that keeps two runners from migrating at once.
 */
import { performance } from 'node:perf_hooks';
import { CutoverError } from '../lib/errors.ts';
import type { Phase } from './lint.ts';
import type { DbEngine } from '../config/database.ts';
import { dbErrorText, ph, quoteIdent, type DbConnection } from './db.ts';
import { runsInTransaction, statementsOf, type MigrationFile, type Statement } from './files.ts';

export type TrackedStatus = 'applied' | 'pending';

export interface TrackedMigration {
  name: string;
  phase: Phase;
  checksum: string;
  status: TrackedStatus;
  /** Version of the release that brought the file (applied, or recorded as pending). */
  release: string;
  recordedAt: number;
  appliedAt: number | null;
  durationMs: number | null;
  actor: string | null;
}

/** How long to wait for another runner's migration lock: 60 seconds. */
export const MIGRATION_LOCK_WAIT_MS = 60_000;
/** PostgreSQL advisory lock key: "cutover" in ASCII, as a number. */
const PG_LOCK_KEY = 0x6375746f766572;

export class Tracking {
  private readonly db: DbConnection;
  private readonly table: string;
  private readonly engine: DbEngine;

  constructor(db: DbConnection, table: string) {
    this.db = db;
    this.engine = db.engine;
    this.table = quoteIdent(db.engine, table);
  }

  async ensure(): Promise<void> {
    const ts = this.engine === 'postgres' ? 'timestamptz' : 'datetime(3)';
    await this.db.query(`CREATE TABLE IF NOT EXISTS ${this.table} (
  name varchar(255) NOT NULL PRIMARY KEY,
  phase varchar(16) NOT NULL,
  checksum char(64) NOT NULL,
  status varchar(16) NOT NULL,
  ${this.engine === 'postgres' ? 'release' : '`release`'} varchar(128) NOT NULL,
  recorded_at ${ts} NOT NULL,
  applied_at ${ts} NULL,
  duration_ms integer NULL,
  actor varchar(128) NULL
)`);
  }

  async list(): Promise<TrackedMigration[]> {
    const rel = this.engine === 'postgres' ? 'release' : '`release`';
    const rows = await this.db.query<Record<string, unknown>>(`SELECT name, phase, checksum, status, ${rel} AS release_, recorded_at, applied_at, duration_ms, actor FROM ${this.table} ORDER BY name`);
    return rows.map((r) => ({
      name: String(r.name), phase: String(r.phase) as Phase, checksum: String(r.checksum).trim(), status: String(r.status) as TrackedStatus,
      release: String(r.release_), recordedAt: toMs(r.recorded_at) ?? 0, appliedAt: toMs(r.applied_at),
      durationMs: r.duration_ms === null || r.duration_ms === undefined ? null : Number(r.duration_ms), actor: r.actor === null || r.actor === undefined ? null : String(r.actor),
    }));
  }

  /** Record (or update) a file as pending: held, not applied. */
  async markPending(file: MigrationFile, release: string): Promise<void> {
    const e = this.engine;
    const rel = e === 'postgres' ? 'release' : '`release`';
    await this.db.query(`DELETE FROM ${this.table} WHERE name = ${ph(e, 1)} AND status = 'pending'`, [file.name]);
    await this.db.query(`INSERT INTO ${this.table} (name, phase, checksum, status, ${rel}, recorded_at) VALUES (${ph(e, 1)}, ${ph(e, 2)}, ${ph(e, 3)}, 'pending', ${ph(e, 4)}, ${ph(e, 5)})`,
      [file.name, file.phase, file.checksum, release, new Date()]);
  }

  private async markApplied(db: DbConnection, file: MigrationFile, release: string, durationMs: number, actor: string): Promise<void> {
    const e = this.engine;
    const rel = e === 'postgres' ? 'release' : '`release`';
    const now = new Date();
    await db.query(`DELETE FROM ${this.table} WHERE name = ${ph(e, 1)}`, [file.name]);
    await db.query(`INSERT INTO ${this.table} (name, phase, checksum, status, ${rel}, recorded_at, applied_at, duration_ms, actor) VALUES (${ph(e, 1)}, ${ph(e, 2)}, ${ph(e, 3)}, 'applied', ${ph(e, 4)}, ${ph(e, 5)}, ${ph(e, 6)}, ${ph(e, 7)}, ${ph(e, 8)})`,
      [file.name, file.phase, file.checksum, release, now, now, Math.round(durationMs), actor.slice(0, 128)]);
  }

  /**
   * Run one file's statements and record it as applied, in one transaction where the engine
   * allows (PostgreSQL, unless the file cannot run in one). A failing statement throws
   * CUTOVER_ERR_MIGRATION with file, line, statement and the database's message.
   */
  async apply(file: MigrationFile, o: { release: string; actor: string; lockTimeoutMs: number }): Promise<{ durationMs: number; statements: number; transaction: boolean }> {
    const statements = await statementsOf(file, this.engine);
    const transaction = runsInTransaction(file.sql, statements, this.engine);
    const t0 = performance.now();
    await setLockTimeout(this.db, o.lockTimeoutMs);
    if (transaction) await this.db.query('BEGIN');
    let done = 0;
    try {
      for (const s of statements) {
        await runStatement(this.db, file.name, s, done, transaction);
        done++;
      }
      await this.markApplied(this.db, file, o.release, performance.now() - t0, o.actor);
      if (transaction) await this.db.query('COMMIT');
    } catch (err) {
      if (transaction) await this.db.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    return { durationMs: performance.now() - t0, statements: statements.length, transaction };
  }

  /** Hold the migration lock while `fn` runs (a second daemon or a hand-run tool waits). */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    if (this.engine === 'postgres') {
      await this.db.query(`SET lock_timeout = '${MIGRATION_LOCK_WAIT_MS}ms'`);
      await this.db.query(`SELECT pg_advisory_lock(${PG_LOCK_KEY})`);
      try { return await fn(); } finally { await this.db.query(`SELECT pg_advisory_unlock(${PG_LOCK_KEY})`).catch(() => undefined); }
    }
    const [row] = await this.db.query<{ got: number | string | null }>('SELECT GET_LOCK(?, ?) AS got', ['cutover_migrations', MIGRATION_LOCK_WAIT_MS / 1000]);
    if (Number(row?.got) !== 1) throw new CutoverError('CUTOVER_ERR_MIGRATION', `another migration runner holds the lock cutover_migrations (waited ${MIGRATION_LOCK_WAIT_MS / 1000}s)`);
    try { return await fn(); } finally { await this.db.query('SELECT RELEASE_LOCK(?)', ['cutover_migrations']).catch(() => undefined); }
  }
}

/** PostgreSQL lock_timeout / MySQL lock_wait_timeout for the session: a migration waits this long for a lock, then fails instead of queueing traffic behind it. */
export async function setLockTimeout(db: DbConnection, ms: number): Promise<void> {
  if (db.engine === 'postgres') await db.query(`SET lock_timeout = '${Math.max(1, Math.round(ms))}ms'`);
  else await db.query(`SET SESSION lock_wait_timeout = ${Math.max(1, Math.ceil(ms / 1000))}`);
}

/** Run one statement; its failure names file:line, the statement and what the database said. */
export async function runStatement(db: DbConnection, fileName: string, s: Statement, before: number, transaction: boolean): Promise<void> {
  try {
    await db.query(s.text);
  } catch (err) {
    const partial = !transaction && before > 0 ? `; the ${before} statement(s) before it stay applied (no transaction), the file is not recorded` : transaction ? '; the file was rolled back' : '';
    throw new CutoverError('CUTOVER_ERR_MIGRATION', `${fileName}:${s.line}: ${dbErrorText(err)} in \`${shorten(s.text)}\`${partial}`, {
      cause: err, details: { file: fileName, line: s.line, statement: s.text, database: dbErrorText(err) },
    });
  }
}

export function shorten(text: string, max = 160): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

function toMs(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.getTime();
  // mysql2 with dateStrings and timezone 'Z': "2025-01-02 03:04:05.678", UTC.
  const text = String(v).replace(' ', 'T');
  const t = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text}Z`);
  return Number.isNaN(t) ? null : t;
}

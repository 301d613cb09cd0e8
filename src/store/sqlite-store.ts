/**
 * SQLite store (Node's built-in node:sqlite) under stateDir. WAL journal with synchronous=FULL:
 * a committed transaction survives `kill -9` and power loss; an interrupted one leaves nothing.
 * Owns the schema and its migrations; never decides anything.
 *
 * Integrity (issue #15): the database has an id (`meta.db_id`) and a *generation* that every
 * commit changing roles or instances increments in the same transaction. After such a commit the
 * generation is reported to `onGeneration` (the state marker and snapshots, state-marker.ts and
 * snapshots.ts), so a database that comes back older, emptied or replaced can be told from a
 * fresh install (daemon/state-guard.ts). A file SQLite cannot read, or whose `quick_check` fails,
 * is refused at open with `CUTOVER_ERR_STATE_DAMAGED` and is never written to.
 */
import { DatabaseSync, backup, type SQLInputValue } from 'node:sqlite';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { COLORS, type Color, type Instance } from '../environments/types.ts';
import { CutoverError } from '../lib/errors.ts';
import type { DeploymentRecord, EnvironmentState, EventInput, EventRecord, HeldStandby, Store } from './types.ts';

export const STATE_DB_FILE = 'state.db';
const SCHEMA_VERSION = 1;
/** meta key of the standby held beside a candidate (JSON); absent when none. No schema change. */
const HELD_STANDBY_KEY = 'held_standby';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS environments (
  color TEXT PRIMARY KEY, role TEXT NOT NULL, version TEXT, path TEXT, since INTEGER NOT NULL, retire_at INTEGER);
CREATE TABLE IF NOT EXISTS instances (
  id TEXT PRIMARY KEY, color TEXT NOT NULL, idx INTEGER NOT NULL, version TEXT NOT NULL,
  host TEXT NOT NULL, port INTEGER NOT NULL, pid INTEGER, path TEXT, started_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
  id TEXT PRIMARY KEY, body TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS deployments_created ON deployments (created_at);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, type TEXT NOT NULL, deployment TEXT,
  phase TEXT, actor TEXT NOT NULL, reason TEXT NOT NULL, duration_ms REAL, color TEXT, version TEXT, data TEXT);
CREATE INDEX IF NOT EXISTS events_deployment ON events (deployment, seq);
`;

interface EventRow { seq: number; time: number; type: string; deployment: string | null; phase: string | null; actor: string; reason: string; duration_ms: number | null; color: string | null; version: string | null; data: string | null }
interface InstanceRow { id: string; color: string; idx: number; version: string; host: string; port: number; pid: number | null; path: string | null; started_at: number }
interface EnvRow { color: string; role: string; version: string | null; path: string | null; since: number; retire_at: number | null }

export class SqliteStore implements Store {
  readonly file: string;
  private readonly db: DatabaseSync;
  /** Called after a commit that changed roles or instances, with the new generation. Must not throw. */
  onGeneration: ((generation: number, rolesChanged: boolean) => void) | null = null;

  constructor(stateDir: string) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.file = path.join(stateDir, STATE_DB_FILE);
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(this.file);
    } catch (err) {
      throw new CutoverError('CUTOVER_ERR_STATE_WRITE', `cannot open the state database ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    this.db = db;
    // Read before anything is written: a damaged file must stay as it was found (evidence, and
    // what `cutover state restore` moves aside).
    const problems = checkDatabase(db, 'quick_check');
    if (problems.length > 0) {
      db.close();
      throw new CutoverError('CUTOVER_ERR_STATE_DAMAGED', damagedMessage(this.file, problems), { details: { file: this.file, problems } });
    }
    try {
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;');
      db.exec(SCHEMA);
      const meta = db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)');
      meta.run('schema_version', String(SCHEMA_VERSION));
      meta.run('db_id', randomBytes(8).toString('hex'));
      // A database written by an earlier Cutover (no generation yet) with state in it starts at 1.
      meta.run('generation', this.isEmptyState() ? '0' : '1');
      const now = Date.now();
      const ins = db.prepare("INSERT OR IGNORE INTO environments (color, role, since) VALUES (?, 'empty', ?)");
      for (const c of COLORS) ins.run(c, now);
    } catch (err) {
      db.close();
      throw new CutoverError('CUTOVER_ERR_STATE_WRITE', `cannot open the state database ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** This database's identity: a copy (snapshot) keeps it, a recreated file gets a new one. */
  dbId(): string {
    return (this.db.prepare("SELECT value FROM meta WHERE key = 'db_id'").get() as { value: string }).value;
  }

  /** Incremented by every commit that changes roles or instances. */
  generation(): number {
    return Number((this.db.prepare("SELECT value FROM meta WHERE key = 'generation'").get() as { value: string }).value);
  }

  /** No deployment, no event, no instance, no colour in use: what a fresh install looks like. */
  isEmptyState(): boolean {
    const has = (sql: string) => this.db.prepare(sql).get() !== undefined;
    if (!has("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'environments'")) return true;
    return !has('SELECT 1 FROM deployments LIMIT 1') && !has('SELECT 1 FROM events LIMIT 1') && !has('SELECT 1 FROM instances LIMIT 1') &&
      !has("SELECT 1 FROM environments WHERE role != 'empty' LIMIT 1");
  }

  /** `PRAGMA integrity_check` (thorough; `cutover state check`): the problems found, [] when sound. */
  integrityCheck(): string[] {
    return checkDatabase(this.db, 'integrity_check');
  }

  /**
   * A consistent copy of the database: SQLite's online backup, from a read-only connection of its
   * own (WAL: it reads one consistent snapshot while this connection keeps writing; the backup
   * runs off the event loop), all pages in one step so that a concurrent write cannot restart it.
   */
  async snapshotTo(file: string): Promise<void> {
    const src = new DatabaseSync(this.file, { readOnly: true });
    try {
      await backup(src, file, { rate: 1_000_000_000 });
    } finally {
      src.close();
    }
  }

  environments(): Record<Color, EnvironmentState> {
    const rows = this.db.prepare('SELECT * FROM environments').all() as unknown as EnvRow[];
    const out = {} as Record<Color, EnvironmentState>;
    for (const r of rows) {
      out[r.color as Color] = { color: r.color as Color, role: r.role as EnvironmentState['role'], version: r.version, path: r.path, since: r.since, retireAt: r.retire_at };
    }
    return out;
  }

  instances(color: Color): Instance[] {
    const rows = this.db.prepare('SELECT * FROM instances WHERE color = ? ORDER BY idx').all(color) as unknown as InstanceRow[];
    return rows.map((r) => ({ id: r.id, color: r.color as Color, index: r.idx, version: r.version, host: r.host, port: r.port, pid: r.pid, path: r.path, startedAt: r.started_at }));
  }

  deployment(id: string): DeploymentRecord | null {
    const row = this.db.prepare('SELECT body FROM deployments WHERE id = ?').get(id) as { body: string } | undefined;
    return row ? (JSON.parse(row.body) as DeploymentRecord) : null;
  }

  activeDeployment(): DeploymentRecord | null {
    const row = this.db.prepare("SELECT body FROM deployments WHERE status IN ('running', 'awaiting-promotion') ORDER BY created_at DESC LIMIT 1").get() as { body: string } | undefined;
    return row ? (JSON.parse(row.body) as DeploymentRecord) : null;
  }

  deployments(opts: { limit?: number; since?: number } = {}): DeploymentRecord[] {
    const rows = this.db.prepare('SELECT body FROM deployments WHERE created_at >= ? ORDER BY created_at DESC, rowid DESC LIMIT ?')
      .all(opts.since ?? 0, opts.limit ?? 20) as { body: string }[];
    return rows.map((r) => JSON.parse(r.body) as DeploymentRecord);
  }

  events(opts: { deployment?: string; afterSeq?: number; limit?: number } = {}): EventRecord[] {
    const params: SQLInputValue[] = [opts.afterSeq ?? 0];
    let sql = 'SELECT * FROM events WHERE seq > ?';
    if (opts.deployment) { sql += ' AND deployment = ?'; params.push(opts.deployment); }
    sql += ' ORDER BY seq LIMIT ?';
    params.push(opts.limit ?? 1000);
    return (this.db.prepare(sql).all(...params) as unknown as EventRow[]).map(toEvent);
  }

  lastEventSeq(): number {
    const row = this.db.prepare('SELECT max(seq) AS seq FROM events').get() as { seq: number | null };
    return row.seq ?? 0;
  }

  heldStandby(): HeldStandby | null {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(HELD_STANDBY_KEY) as { value: string } | undefined;
    return row ? (JSON.parse(row.value) as HeldStandby) : null;
  }

  commit(change: Parameters<Store['commit']>[0]): EventRecord[] {
    const stored: EventRecord[] = [];
    try {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        for (const e of change.environments ?? []) {
          this.db.prepare('UPDATE environments SET role = ?, version = ?, path = ?, since = ?, retire_at = ? WHERE color = ?')
            .run(e.role, e.version, e.path, e.since, e.retireAt, e.color);
        }
        if (bumps(change)) this.db.exec("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'");
        for (const { color, instances } of change.instances ?? []) {
          this.db.prepare('DELETE FROM instances WHERE color = ?').run(color);
          const ins = this.db.prepare('INSERT INTO instances (id, color, idx, version, host, port, pid, path, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
          for (const i of instances) ins.run(i.id, i.color, i.index, i.version, i.host, i.port, i.pid, i.path, i.startedAt);
        }
        if (change.held === null) this.db.prepare('DELETE FROM meta WHERE key = ?').run(HELD_STANDBY_KEY);
        else if (change.held !== undefined) {
          this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(HELD_STANDBY_KEY, JSON.stringify(change.held));
        }
        if (change.deployment) {
          const d = change.deployment;
          this.db.prepare('INSERT INTO deployments (id, body, status, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body, status = excluded.status')
            .run(d.id, JSON.stringify(d), d.status, d.createdAt);
        }
        const insEvent = this.db.prepare('INSERT INTO events (time, type, deployment, phase, actor, reason, duration_ms, color, version, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq');
        for (const e of change.events ?? []) {
          const time = Date.now();
          const row = insEvent.get(time, e.type, e.deployment ?? null, e.phase ?? null, e.actor, e.reason, e.durationMs ?? null, e.color ?? null, e.version ?? null, e.data ? JSON.stringify(e.data) : null) as { seq: number };
          stored.push({ seq: row.seq, time, type: e.type, deployment: e.deployment ?? null, phase: e.phase ?? null, actor: e.actor, reason: e.reason, durationMs: e.durationMs ?? null, color: e.color ?? null, version: e.version ?? null, data: e.data ?? null });
        }
        this.db.exec('COMMIT');
      } catch (err) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    } catch (err) {
      throw new CutoverError('CUTOVER_ERR_STATE_WRITE', `state could not be written to ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    if (bumps(change) && this.onGeneration) {
      try {
        this.onGeneration(this.generation(), (change.environments?.length ?? 0) > 0 || change.held !== undefined);
      } catch { /* the marker and snapshots are best effort after a durable commit */ }
    }
    return stored;
  }

  /** A commit is durable when it returns. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * `PRAGMA query_only`: while on, every write fails (as on a read-only or full disk) and reads go
   * on. For the fault tests (test/faults-state.test.ts) — root ignores a chmod'ed file, so chmod
   * cannot simulate it — and for inspecting a live daemon's state without risk.
   */
  setQueryOnly(on: boolean): void {
    this.db.exec(`PRAGMA query_only = ${on ? 'ON' : 'OFF'}`);
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}

/** Whether a commit changes what runs where (roles, instances, the held standby): it increments the generation. */
function bumps(change: Parameters<Store['commit']>[0]): boolean {
  return (change.environments?.length ?? 0) + (change.instances?.length ?? 0) > 0 || change.held !== undefined;
}

/**
 * `PRAGMA quick_check` / `integrity_check` on an open database: the problems, [] when it is sound.
 * A file that is not a database at all (or a WAL that cannot be applied) throws on the first read:
 * that is a problem too.
 */
export function checkDatabase(db: DatabaseSync, pragma: 'quick_check' | 'integrity_check'): string[] {
  try {
    const rows = db.prepare(`PRAGMA ${pragma}`).all() as Record<string, unknown>[];
    const out = rows.map((r) => String(Object.values(r)[0])).filter((v) => v !== 'ok');
    return out.slice(0, 20);
  } catch (err) {
    return [(err as Error).message];
  }
}

function damagedMessage(file: string, problems: string[]): string {
  return `the state database ${file} is damaged (${problems.slice(0, 3).join('; ')}); it was not changed. ` +
    'See `cutover state check`, and `cutover state restore` to put back the newest good snapshot';
}

function toEvent(r: EventRow): EventRecord {
  return {
    seq: r.seq, time: r.time, type: r.type, deployment: r.deployment, phase: r.phase, actor: r.actor, reason: r.reason,
    durationMs: r.duration_ms, color: r.color as Color | null, version: r.version, data: r.data ? (JSON.parse(r.data) as Record<string, unknown>) : null,
  };
}

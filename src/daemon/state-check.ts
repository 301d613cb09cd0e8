/**
 * `cutover state check` and `cutover state restore`: the operator's tools for a state directory
 * the daemon refused (state-guard.ts). They work on the files, not through the admin API — they
 * are for when no daemon can run on that state.
 *
 * check: read-only (safe while a daemon runs). restore: only while no daemon holds the directory
 * (it takes the same lock, state-lock.ts); it moves the current state.db, its WAL and the marker
 * aside into `damaged-<time>/` — never deletes them — and puts a snapshot that passes SQLite's
 * integrity check in their place, with a marker that accepts it.
 *
 * Must never: signal a process, or write to state.db in place.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { CutoverError } from '../lib/errors.ts';
import { COLORS } from '../environments/types.ts';
import { checkDatabase, STATE_DB_FILE } from '../store/sqlite-store.ts';
import { MARKER_FILE, readMarker, writeMarker, type StateMarker } from '../store/state-marker.ts';
import { inspectSnapshot, listSnapshots, type SnapshotInfo } from '../store/snapshots.ts';
import { countLogFiles, findingsOf, markedProcesses, recoveryAdvice, restoredOverLive, unaccounted, type MarkedProcess } from './state-guard.ts';
import { isLocked, readHolder, StateLock } from './state-lock.ts';

export interface DatabaseReport {
  file: string;
  exists: boolean;
  bytes: number;
  walBytes: number;
  problems: string[];
  dbId: string | null;
  generation: number | null;
  empty: boolean | null;
  environments: { color: string; role: string; version: string | null }[];
  instances: { id: string; pid: number | null; version: string }[];
  interrupted: { id: string; color: string; version: string; phase: string } | null;
  /** The standby held warm beside the interrupted deployment's candidate, if any. */
  held: { color: string; version: string | null } | null;
}

export interface StateReport {
  stateDir: string;
  daemon: { running: boolean; pid: number | null };
  database: DatabaseReport;
  marker: StateMarker | null | 'unreadable';
  instances: { running: MarkedProcess[]; unaccounted: MarkedProcess[] };
  snapshots: (SnapshotInfo & { problems: string[]; sameDatabase: boolean | null; live: { color: string; version: string | null } | null })[];
  /** Why a start would be refused; [] when it would not. */
  findings: string[];
  advice: string[];
  ok: boolean;
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function readDatabase(stateDir: string): DatabaseReport {
  const file = path.join(stateDir, STATE_DB_FILE);
  const r: DatabaseReport = {
    file, exists: existsSync(file), bytes: sizeOf(file), walBytes: sizeOf(`${file}-wal`), problems: [], dbId: null, generation: null, empty: null,
    environments: [], instances: [], interrupted: null, held: null,
  };
  if (!r.exists) return r;
  let db: DatabaseSync | null = null;
  try {
    db = new DatabaseSync(file, { readOnly: true });
    r.problems = checkDatabase(db, 'integrity_check');
    if (r.problems.length > 0) return r;
    const has = (table: string) => db!.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined;
    if (!has('meta') || !has('environments')) {
      r.empty = true;
      return r;
    }
    const meta = (k: string) => (db!.prepare('SELECT value FROM meta WHERE key = ?').get(k) as { value: string } | undefined)?.value ?? null;
    r.dbId = meta('db_id');
    const g = meta('generation');
    r.generation = g === null ? null : Number(g);
    r.environments = db.prepare('SELECT color, role, version FROM environments ORDER BY color').all() as unknown as DatabaseReport['environments'];
    r.instances = db.prepare('SELECT id, pid, version FROM instances ORDER BY id').all() as unknown as DatabaseReport['instances'];
    const active = db.prepare("SELECT body FROM deployments WHERE status IN ('running', 'awaiting-promotion') ORDER BY created_at DESC LIMIT 1").get() as { body: string } | undefined;
    if (active) {
      const d = JSON.parse(active.body) as { id: string; color: string; version: string; phase: string };
      r.interrupted = { id: d.id, color: d.color, version: d.version, phase: d.phase };
    }
    const heldJson = meta('held_standby');
    if (heldJson !== null) {
      const h = JSON.parse(heldJson) as { env: { color: string; version: string | null } };
      r.held = { color: h.env.color, version: h.env.version };
    }
    const any = (sql: string) => db!.prepare(sql).get() !== undefined;
    r.empty = !any('SELECT 1 FROM deployments LIMIT 1') && !any('SELECT 1 FROM events LIMIT 1') && r.instances.length === 0 && r.environments.every((e) => e.role === 'empty');
  } catch (err) {
    r.problems.push((err as Error).message);
  } finally {
    db?.close();
  }
  return r;
}

/** Everything about a state directory a start would look at, and its verdict. Read-only. */
export async function checkStateDir(stateDir: string): Promise<StateReport> {
  const database = readDatabase(stateDir);
  const marker = readMarker(stateDir);
  const running = await markedProcesses(stateDir);
  const envs = Object.fromEntries(COLORS.map((c) => [c, { version: database.environments.find((e) => e.color === c)?.version ?? null }]));
  const roles = Object.fromEntries(database.environments.map((e) => [e.color, { role: e.role, version: e.version }]));
  const unknown = unaccounted(envs, database.interrupted, running, restoredOverLive(marker, { environments: () => roles as never }), database.held);
  const snapshots = listSnapshots(stateDir).map((s) => {
    const i = inspectSnapshot(s.file);
    const sameDatabase = i.dbId === null ? null : marker !== null && marker !== 'unreadable' ? i.dbId === marker.dbId : database.dbId !== null ? i.dbId === database.dbId : null;
    return { ...s, problems: i.problems, sameDatabase, live: i.live };
  });
  let findings: string[];
  if (!database.exists) {
    // What a start does then: a new, empty database — fine for a fresh directory, refused when
    // the marker, logs, snapshots or running instances say there was state.
    findings = findingsOf({
      stateDir, marker, empty: true, dbId: '(none)', generation: 0,
      logFiles: countLogFiles(stateDir), snapshots: snapshots.length, unknown, stopUnknownInstances: false,
    });
  } else if (database.problems.length > 0) {
    findings = [`state.db cannot be used: ${database.problems.slice(0, 3).join('; ')}`];
    if (unknown.length > 0) findings.push(...findingsOf({ stateDir, marker: null, empty: false, dbId: '', generation: 0, logFiles: 0, snapshots: 0, unknown, stopUnknownInstances: false }));
  } else {
    findings = findingsOf({
      stateDir, marker, empty: database.empty ?? true, dbId: database.dbId ?? '(none)', generation: database.generation ?? 0,
      logFiles: countLogFiles(stateDir), snapshots: snapshots.length, unknown, stopUnknownInstances: false,
    });
  }
  const locked = existsSync(path.join(stateDir, 'daemon.lock')) && isLocked(stateDir);
  return {
    stateDir, daemon: { running: locked, pid: locked ? readHolder(stateDir) : null }, database, marker,
    instances: { running, unaccounted: unknown }, snapshots, findings, advice: findings.length > 0 ? recoveryAdvice(stateDir, unknown) : [], ok: findings.length === 0,
  };
}

export interface RestoreResult {
  snapshot: SnapshotInfo;
  generation: number;
  live: { color: string; version: string | null } | null;
  /** Where the replaced files went. */
  keptAside: string;
  moved: string[];
  /** The replaced state was newer than the snapshot: what was live in it (its processes are not adopted as a candidate). */
  olderThanReplaced: { generation: number; live: { color: string; version: string | null } | null } | null;
}

/**
 * Puts a snapshot back as state.db: `which` names one (file name in snapshots/ or a path), else
 * the newest that passes the integrity check. Refused while a daemon holds the directory.
 */
export function restoreSnapshot(stateDir: string, which?: string): RestoreResult {
  const lock = StateLock.acquire(stateDir, 'restore the state');
  try {
    const all = listSnapshots(stateDir);
    let candidates: SnapshotInfo[];
    if (which !== undefined) {
      const byName = all.find((s) => s.name === which || s.file === path.resolve(which));
      if (!byName) throw new CutoverError('CUTOVER_ERR_NOT_FOUND', `no snapshot ${JSON.stringify(which)} in ${path.join(stateDir, 'snapshots')} (see \`cutover state check\`)`);
      candidates = [byName];
    } else candidates = all;
    let chosen: { s: SnapshotInfo; dbId: string; generation: number; live: RestoreResult['live'] } | null = null;
    const refused: string[] = [];
    for (const s of candidates) {
      const i = inspectSnapshot(s.file);
      if (i.problems.length > 0 || i.dbId === null || i.generation === null) {
        refused.push(`${s.name}: ${i.problems[0] ?? 'not a Cutover state database'}`);
        continue;
      }
      chosen = { s, dbId: i.dbId, generation: i.generation, live: i.live };
      break;
    }
    if (!chosen) {
      throw new CutoverError('CUTOVER_ERR_STATE_DAMAGED', all.length === 0
        ? `no snapshot to restore in ${path.join(stateDir, 'snapshots')}`
        : `no snapshot passes the integrity check: ${refused.join('; ')}`);
    }
    const old = readMarker(stateDir);
    const olderThanReplaced = old !== null && old !== 'unreadable' && old.generation > chosen.generation ? { generation: old.generation, live: old.live } : null;
    const aside = path.join(stateDir, `damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    mkdirSync(aside, { recursive: true, mode: 0o700 });
    const moved: string[] = [];
    for (const f of [STATE_DB_FILE, `${STATE_DB_FILE}-wal`, `${STATE_DB_FILE}-shm`, MARKER_FILE]) {
      const from = path.join(stateDir, f);
      if (!existsSync(from)) continue;
      renameSync(from, path.join(aside, f));
      moved.push(f);
    }
    const tmp = path.join(stateDir, `${STATE_DB_FILE}.restore.tmp`);
    copyFileSync(chosen.s.file, tmp);
    renameSync(tmp, path.join(stateDir, STATE_DB_FILE));
    writeMarker(stateDir, { dbId: chosen.dbId, generation: chosen.generation, live: chosen.live, ...(olderThanReplaced ? { restoredOver: olderThanReplaced } : {}) });
    return { snapshot: chosen.s, generation: chosen.generation, live: chosen.live, keptAside: aside, moved, olderThanReplaced };
  } finally {
    lock.release();
  }
}

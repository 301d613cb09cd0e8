/**
 * Snapshots of the state database: `<stateDir>/snapshots/state-g<generation>-<time>.db`, consistent
 * copies made with SQLite's online backup (never a file copy of a live WAL database). One is taken
 * when the daemon has accepted its state at start, after every commit that moved roles (switch,
 * rollback, failover, retirement, a new candidate), and at most every 30 s after instance-only
 * changes; the newest `keep` (10) are kept. `cutover state restore` puts one back.
 *
 * Owns: the snapshots directory. Must never: block a traffic move (snapshots run after the commit,
 * in the background), or delete a snapshot while fewer than `keep` newer good ones exist.
 */
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { checkDatabase, type SqliteStore } from './sqlite-store.ts';

export const SNAPSHOTS_DIR = 'snapshots';
/** Snapshots kept: the newest 10. */
export const DEFAULT_SNAPSHOTS_KEPT = 10;
/** After instance-only changes (restarts, adoption), at most one snapshot per 30 seconds. */
export const SNAPSHOT_MIN_INTERVAL_MS = 30_000;

export interface SnapshotInfo {
  file: string;
  name: string;
  generation: number;
  takenAt: number;
  bytes: number;
}

/** close() waits this long at most for a snapshot in progress: 5 seconds. */
const CLOSE_WAIT_MS = 5_000;

const NAME = /^state-g(\d+)-(\d+)\.db$/;

export function snapshotsDir(stateDir: string): string {
  return path.join(stateDir, SNAPSHOTS_DIR);
}

/** Snapshots on disk, newest first. */
export function listSnapshots(stateDir: string): SnapshotInfo[] {
  let names: string[];
  try {
    names = readdirSync(snapshotsDir(stateDir));
  } catch {
    return [];
  }
  const out: SnapshotInfo[] = [];
  for (const name of names) {
    const m = NAME.exec(name);
    if (!m) continue;
    const file = path.join(snapshotsDir(stateDir), name);
    out.push({ file, name, generation: Number(m[1]), takenAt: Number(m[2]), bytes: statSync(file).size });
  }
  return out.sort((a, b) => b.takenAt - a.takenAt || b.generation - a.generation);
}

/** What a snapshot holds, read-only: integrity problems, id, generation, live colour. */
export function inspectSnapshot(file: string): { problems: string[]; dbId: string | null; generation: number | null; live: { color: string; version: string | null } | null } {
  let db: DatabaseSync | null = null;
  try {
    db = new DatabaseSync(file, { readOnly: true });
    const problems = checkDatabase(db, 'integrity_check');
    if (problems.length > 0) return { problems, dbId: null, generation: null, live: null };
    const meta = (k: string) => (db!.prepare('SELECT value FROM meta WHERE key = ?').get(k) as { value: string } | undefined)?.value ?? null;
    const live = db.prepare("SELECT color, version FROM environments WHERE role = 'live'").get() as { color: string; version: string | null } | undefined;
    const g = meta('generation');
    return { problems: [], dbId: meta('db_id'), generation: g === null ? null : Number(g), live: live ? { color: live.color, version: live.version } : null };
  } catch (err) {
    return { problems: [(err as Error).message], dbId: null, generation: null, live: null };
  } finally {
    db?.close();
  }
}

export class Snapshotter {
  readonly #store: SqliteStore;
  readonly #stateDir: string;
  readonly #keep: number;
  readonly #onError: (err: unknown) => void;
  #running: Promise<void> | null = null;
  #again = false;
  #lastAt = 0;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(store: SqliteStore, stateDir: string, o: { keep?: number; onError: (err: unknown) => void }) {
    this.#store = store;
    this.#stateDir = stateDir;
    this.#keep = o.keep ?? DEFAULT_SNAPSHOTS_KEPT;
    this.#onError = o.onError;
  }

  /** After a commit: at once when roles moved, else at most every SNAPSHOT_MIN_INTERVAL_MS. */
  changed(rolesChanged: boolean): void {
    if (this.#closed) return;
    const wait = rolesChanged ? 0 : Math.max(0, this.#lastAt + SNAPSHOT_MIN_INTERVAL_MS - Date.now());
    if (wait === 0) {
      if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
      void this.take().catch(this.#onError);
      return;
    }
    if (this.#timer) return;
    this.#timer = setTimeout(() => { this.#timer = null; void this.take().catch(this.#onError); }, wait);
    this.#timer.unref();
  }

  /** Takes one now (or right after the one in progress); never rejects (failures go to onError). */
  take(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          try {
            await this.#takeOne();
          } catch (err) {
            this.#onError(err);
          }
        } while (this.#again && !this.#closed);
      } finally {
        this.#running = null;
      }
    })();
    return this.#running;
  }

  async #takeOne(): Promise<void> {
    const dir = snapshotsDir(this.#stateDir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const now = Date.now();
    const name = `state-g${this.#store.generation()}-${now}.db`;
    const tmp = path.join(dir, `.${name}.tmp`);
    rmSync(tmp, { force: true });
    await this.#store.snapshotTo(tmp);
    renameSync(tmp, path.join(dir, name));
    this.#lastAt = now;
    for (const old of listSnapshots(this.#stateDir).slice(this.#keep)) rmSync(old.file, { force: true });
  }

  /** Waits for a snapshot in progress; takes no more. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#running) await Promise.race([this.#running, new Promise((r) => setTimeout(r, CLOSE_WAIT_MS).unref())]);
  }
}

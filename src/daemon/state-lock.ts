/**
 * One daemon per state directory: an OS-level lock held for the life of the process.
 *
 * How: `<stateDir>/daemon.lock` is a (empty) SQLite database on which this process opens an
 * EXCLUSIVE transaction and never ends it. SQLite takes that lock with POSIX advisory locks
 * (fcntl), which the kernel drops when the process dies — `kill -9` included — so there is no
 * stale lock to clean up, no pid-reuse guess, and no race between two daemons starting at once
 * (the lock is taken atomically by the kernel). SQLite also tracks its locks per inode inside one
 * process, so a second daemon in the same process (tests) is refused too. Node has no flock(2);
 * node:sqlite is built in, so this needs no native code. Why not a pid file checked for liveness:
 * it can be left behind, its pid reused, and two starts can both see "no live holder".
 *
 * `<stateDir>/daemon.pid` only *names* the holder for the error message; the lock is the truth.
 *
 * Owns: the lock and the pid file. Must never: be taken by a client command (only `cutover up`
 * and an offline `cutover state restore`), or be released while the daemon still runs.
 */
import { DatabaseSync } from 'node:sqlite';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CutoverError } from '../lib/errors.ts';

export const LOCK_FILE = 'daemon.lock';
export const PID_FILE = 'daemon.pid';

export class StateLock {
  readonly stateDir: string;
  readonly #db: DatabaseSync;
  #released = false;

  private constructor(stateDir: string, db: DatabaseSync) {
    this.stateDir = stateDir;
    this.#db = db;
  }

  /**
   * Takes the lock or throws `CUTOVER_ERR_ALREADY_RUNNING` naming the holder's pid. `purpose`
   * words the refusal for an offline command ("restore the state").
   */
  static acquire(stateDir: string, purpose = 'start'): StateLock {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const file = path.join(stateDir, LOCK_FILE);
    // timeout 0: never wait for the holder, refuse at once.
    const db = new DatabaseSync(file, { timeout: 0 });
    try {
      db.exec('PRAGMA journal_mode = DELETE');
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      db.close();
      const holder = readHolder(stateDir);
      throw new CutoverError('CUTOVER_ERR_ALREADY_RUNNING',
        `a daemon is already running (pid ${holder ?? 'unknown'}) on the state directory ${stateDir}; cannot ${purpose}: stop it first, or give this one its own stateDir`,
        { cause: err, details: { pid: holder, stateDir } });
    }
    const lock = new StateLock(stateDir, db);
    const tmp = path.join(stateDir, `${PID_FILE}.${process.pid}.tmp`);
    writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600 });
    renameSync(tmp, path.join(stateDir, PID_FILE));
    return lock;
  }

  /** Releases the lock (idempotent); the pid file goes first, so it never names a process that let go. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (readHolder(this.stateDir) === process.pid) rmSync(path.join(this.stateDir, PID_FILE), { force: true });
    try {
      this.#db.exec('ROLLBACK');
    } catch { /* closing drops the lock anyway */ }
    this.#db.close();
  }
}

/** The pid the holder wrote, or null. */
export function readHolder(stateDir: string): number | null {
  try {
    const n = Number(readFileSync(path.join(stateDir, PID_FILE), 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** Whether some process holds the lock now (for `cutover state check`): tries it and lets go. */
export function isLocked(stateDir: string): boolean {
  let db: DatabaseSync | null = null;
  try {
    db = new DatabaseSync(path.join(stateDir, LOCK_FILE), { timeout: 0 });
    db.exec('BEGIN EXCLUSIVE');
    db.exec('ROLLBACK');
    return false;
  } catch {
    return true;
  } finally {
    db?.close();
  }
}

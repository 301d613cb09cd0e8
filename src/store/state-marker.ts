/**
 * The state marker, `<stateDir>/state.marker.json`: written beside state.db after every commit
 * that changed roles or instances, it says "this directory holds state of database <id> at least
 * at generation <n>". It is how a start tells a fresh install from an emptied, replaced or
 * rolled-back state.db (daemon/state-guard.ts): the database can lose what the marker remembers
 * (a WAL cut short, an old copy put back) but a committed transaction comes before its marker
 * write, so a sound database is never behind its marker.
 *
 * Owns: reading and atomically replacing the marker. Must never: be written before the guard
 * accepted the database at start (a refused start leaves the evidence as it was), or hold anything
 * secret.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';

export const MARKER_FILE = 'state.marker.json';

export interface StateMarker {
  format: 1;
  dbId: string;
  generation: number;
  /** When it was written (ms since the epoch). */
  updatedAt: number;
  /** What was live then, for the messages of a refused start. */
  live: { color: string; version: string | null } | null;
  /**
   * Set by `cutover state restore` when the snapshot put back is older than the state it replaced:
   * what was live then. The next start does not treat that release's processes as accounted for
   * (they may be the real live release the snapshot does not know as live); a start clears it.
   */
  restoredOver?: { generation: number; live: { color: string; version: string | null } | null };
}

export function markerPath(stateDir: string): string {
  return path.join(stateDir, MARKER_FILE);
}

/** The marker; null when there is none; `'unreadable'` when a file is there but is not a marker. */
export function readMarker(stateDir: string): StateMarker | null | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(markerPath(stateDir), 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : 'unreadable';
  }
  try {
    const m = JSON.parse(text) as Partial<StateMarker>;
    if (m.format !== 1 || typeof m.dbId !== 'string' || typeof m.generation !== 'number') return 'unreadable';
    return { format: 1, dbId: m.dbId, generation: m.generation, updatedAt: Number(m.updatedAt ?? 0), live: m.live ?? null, ...(m.restoredOver ? { restoredOver: m.restoredOver } : {}) };
  } catch {
    return 'unreadable';
  }
}

/** Atomic and durable: temp file, fsync, rename over, fsync the directory. */
export function writeMarker(stateDir: string, m: Omit<StateMarker, 'format' | 'updatedAt'>): void {
  const file = markerPath(stateDir);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify({ format: 1, ...m, updatedAt: Date.now() })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  try {
    const dir = openSync(stateDir, 'r');
    try { fsyncSync(dir); } finally { closeSync(dir); }
  } catch { /* some filesystems refuse fsync on a directory; the rename is still atomic */ }
}

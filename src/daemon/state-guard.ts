/**
 * The start-up decision on the state directory (issue #15): may this daemon trust its state.db?
 *
 * Refused (`CUTOVER_ERR_STATE_DAMAGED`, `cutover up` exits 5) when:
 *  - the marker beside state.db (store/state-marker.ts) names another database (emptied, deleted
 *    and recreated, or replaced), or a later generation than the database has (writes lost: a WAL
 *    cut short, an old copy put back);
 *  - there is no marker and the database is empty, but the directory was used before: instance
 *    log files, snapshots, or running processes carrying this state directory's mark;
 *  - processes carrying the mark run that the state does not account for (their colour's recorded
 *    release, or the interrupted deployment's, is another version) — unless the operator said
 *    `--stop-unknown-instances`.
 * Damaged files themselves are refused when the store opens them (sqlite-store.ts).
 *
 * Owns: that decision and its message (what was found, how to recover). Must never: change
 * anything when it refuses — no marker write, no process signalled, no file moved.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { CutoverError } from '../lib/errors.ts';
import { listPids, readEnviron, readStat } from '../environments/proc.ts';
import { COLORS } from '../environments/types.ts';
import type { SqliteStore } from '../store/sqlite-store.ts';
import { MARKER_FILE, readMarker, writeMarker, type StateMarker } from '../store/state-marker.ts';
import { listSnapshots } from '../store/snapshots.ts';

export interface MarkedProcess { pid: number; color: string; instance: string; version: string }

/** Group leaders whose environment carries `CUTOVER_STATE_DIR=<stateDir>`: instances some daemon of this directory started. */
export async function markedProcesses(stateDir: string): Promise<MarkedProcess[]> {
  const out: MarkedProcess[] = [];
  for (const pid of await listPids()) {
    if (pid === process.pid) continue;
    const env = await readEnviron(pid);
    if (env?.get('CUTOVER_STATE_DIR') !== stateDir) continue;
    const st = await readStat(pid);
    if (st === null || st.state === 'Z' || st.pgrp !== pid) continue;
    out.push({ pid, color: env.get('CUTOVER_COLOR') ?? '?', instance: env.get('CUTOVER_INSTANCE') ?? '?', version: env.get('CUTOVER_VERSION') ?? '?' });
  }
  return out.sort((a, b) => a.pid - b.pid);
}

/**
 * Processes the stored state cannot account for: no colour record and no interrupted deployment of
 * their version. `lostLive`: a release that was live in a state replaced by an older snapshot and
 * is not live in this one — its processes are never taken for a mere interrupted candidate.
 */
export function unaccounted(
  envs: Record<string, { version: string | null }>, active: { color: string; version: string } | null, procs: MarkedProcess[],
  lostLive: { color: string; version: string | null } | null = null,
  held: { color: string; version: string | null } | null = null,
): MarkedProcess[] {
  return procs.filter((p) => {
    if (!(COLORS as readonly string[]).includes(p.color)) return true;
    if (lostLive !== null && lostLive.color === p.color && lostLive.version === p.version) return true;
    // The standby held warm beside a candidate of the same colour (issue #16).
    if (held !== null && held.color === p.color && held.version === p.version) return false;
    const env = envs[p.color];
    if (env !== undefined && env.version !== null && env.version === p.version) return false;
    return !(active !== null && active.color === p.color && active.version === p.version);
  });
}

export interface GuardOptions {
  /** The process provider marks its instances; the static provider runs none. */
  processProvider: boolean;
  /** `cutover up --stop-unknown-instances`: processes the state does not account for may be stopped by recovery. */
  stopUnknownInstances: boolean;
}

function describe(p: MarkedProcess[]): string {
  const shown = p.slice(0, 6).map((x) => `${x.color}-${x.instance} ${x.version} (pid ${x.pid})`).join(', ');
  return p.length > 6 ? `${shown} and ${p.length - 6} more` : shown;
}

function when(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : 'unknown time';
}

/** What the guard compares; also what `cutover state check` reports (state-check.ts). */
export interface StateFacts {
  stateDir: string;
  marker: StateMarker | null | 'unreadable';
  empty: boolean;
  dbId: string;
  generation: number;
  logFiles: number;
  snapshots: number;
  unknown: MarkedProcess[];
  stopUnknownInstances: boolean;
}

/** Every reason not to trust the database, in words; [] when it may be used. */
export function findingsOf(f: StateFacts): string[] {
  const findings: string[] = [];
  const { marker } = f;
  if (marker === 'unreadable') {
    findings.push(`${MARKER_FILE} is there but unreadable: it cannot confirm that state.db is the database this directory had`);
  } else if (marker !== null) {
    const last = `${MARKER_FILE} records generation ${marker.generation} of database ${marker.dbId}, written ${when(marker.updatedAt)}${marker.live ? `, when ${marker.live.version} was live on ${marker.live.color}` : ''}`;
    if (marker.dbId !== f.dbId) {
      findings.push(f.empty
        ? `state.db holds no state at all (no deployment, no live colour), but ${last}: it was emptied, truncated or deleted`
        : `state.db is another database (id ${f.dbId}) than this directory had: ${last}`);
    } else if (marker.generation > f.generation) {
      findings.push(`state.db is older than the state last recorded: generation ${f.generation}, but ${last}. Writes were lost (a write-ahead log cut short, or an old copy put back); starting on it would bring back an older release`);
    }
  } else if (f.empty) {
    const used: string[] = [];
    if (f.logFiles > 0) used.push(`${f.logFiles} instance log file(s) in logs/`);
    if (f.snapshots > 0) used.push(`${f.snapshots} snapshot(s) in snapshots/`);
    if (used.length > 0) findings.push(`state.db holds no state, but this directory was used before: ${used.join(', ')}`);
  }
  if (f.unknown.length > 0 && !f.stopUnknownInstances) {
    findings.push(`${f.unknown.length} running instance(s) of this state directory are not accounted for by state.db: ${describe(f.unknown)}. They may be the live release of a newer state; nothing was stopped`);
  }
  return findings;
}

export function countLogFiles(stateDir: string): number {
  const dir = path.join(stateDir, 'logs');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.log')).length : 0;
}

/** The ways out, for a refused start and for `cutover state check`. */
export function recoveryAdvice(stateDir: string, unknown: MarkedProcess[]): string[] {
  const newest = listSnapshots(stateDir)[0];
  return [
    '  cutover state check      what is there: the database, the marker, the snapshots, the running instances',
    newest
      ? `  cutover state restore    put back the newest snapshot (${newest.name}, generation ${newest.generation}, taken ${when(newest.takenAt)}); the damaged files are kept aside`
      : '  (no snapshot to restore: snapshots/ is empty)',
    unknown.length > 0 ? '  cutover up --stop-unknown-instances   start on this state anyway and stop the instances it does not account for' : null,
    `  to start over on purpose, move ${stateDir} away (instances it ran keep running: stop them, or start with --stop-unknown-instances)`,
  ].filter((l): l is string => l !== null);
}

/**
 * Accepts the state (then writes the marker, so later starts compare against it) or throws
 * `CUTOVER_ERR_STATE_DAMAGED` with every finding and the way out.
 */
export async function guardState(store: SqliteStore, stateDir: string, o: GuardOptions): Promise<void> {
  const procs = o.processProvider ? await markedProcesses(stateDir) : [];
  const marker = readMarker(stateDir);
  const held = store.heldStandby();
  const unknown = unaccounted(store.environments(), store.activeDeployment(), procs, restoredOverLive(marker, store), held ? { color: held.env.color, version: held.env.version } : null);
  const findings = findingsOf({
    stateDir, marker, empty: store.isEmptyState(), dbId: store.dbId(), generation: store.generation(),
    logFiles: countLogFiles(stateDir), snapshots: listSnapshots(stateDir).length, unknown, stopUnknownInstances: o.stopUnknownInstances,
  });
  if (findings.length > 0) {
    throw new CutoverError('CUTOVER_ERR_STATE_DAMAGED',
      `refusing to start: the state in ${stateDir} cannot be trusted. No instance was stopped and no state was overwritten.\n${findings.map((f) => `  - ${f}`).join('\n')}\nTo recover:\n${recoveryAdvice(stateDir, unknown).join('\n')}`,
      { details: { stateDir, findings, unknownInstances: unknown } });
  }
  writeCurrentMarker(store, stateDir);
}

/** After a restore of an older snapshot: the release that was live before, when this state does not have it live. */
export function restoredOverLive(marker: StateMarker | null | 'unreadable', store: Pick<SqliteStore, 'environments'>): { color: string; version: string | null } | null {
  if (marker === null || marker === 'unreadable' || !marker.restoredOver?.live) return null;
  const was = marker.restoredOver.live;
  const envs = store.environments() as Record<string, { role: string; version: string | null }>;
  const now = envs[was.color];
  return now !== undefined && now.role === 'live' && now.version === was.version ? null : was;
}

/** The marker for the database as it is now. */
export function writeCurrentMarker(store: SqliteStore, stateDir: string): void {
  const envs = store.environments();
  const live = COLORS.find((c) => envs[c].role === 'live');
  const m: Omit<StateMarker, 'format' | 'updatedAt'> = { dbId: store.dbId(), generation: store.generation(), live: live ? { color: live, version: envs[live].version } : null };
  writeMarker(stateDir, m);
}

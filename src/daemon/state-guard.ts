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

/** Processes the stored state cannot account for: no colour record and no interrupted deployment of their version. */
export function unaccounted(store: SqliteStore, procs: MarkedProcess[]): MarkedProcess[] {
  const envs = store.environments();
  const active = store.activeDeployment();
  return procs.filter((p) => {
    if (!(COLORS as readonly string[]).includes(p.color)) return true;
    const env = envs[p.color as (typeof COLORS)[number]];
    if (env.version !== null && env.version === p.version) return false;
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

/**
 * Accepts the state (then writes the marker, so later starts compare against it) or throws
 * `CUTOVER_ERR_STATE_DAMAGED` with every finding and the way out.
 */
export async function guardState(store: SqliteStore, stateDir: string, o: GuardOptions): Promise<void> {
  const findings: string[] = [];
  const marker = readMarker(stateDir);
  const empty = store.isEmptyState();
  const dbId = store.dbId();
  const generation = store.generation();
  const procs = o.processProvider ? await markedProcesses(stateDir) : [];

  if (marker === 'unreadable') {
    findings.push(`${MARKER_FILE} is there but unreadable: it cannot confirm that state.db is the database this directory had`);
  } else if (marker !== null) {
    const last = `${MARKER_FILE} records generation ${marker.generation} of database ${marker.dbId}, written ${when(marker.updatedAt)}${marker.live ? `, when ${marker.live.version} was live on ${marker.live.color}` : ''}`;
    if (marker.dbId !== dbId) {
      findings.push(empty
        ? `state.db holds no state at all (no deployment, no live colour), but ${last}: it was emptied, truncated or deleted`
        : `state.db is another database (id ${dbId}) than this directory had: ${last}`);
    } else if (marker.generation > generation) {
      findings.push(`state.db is older than the state last recorded: generation ${generation}, but ${last}. Writes were lost (a write-ahead log cut short, or an old copy put back); starting on it would bring back an older release`);
    }
  } else if (empty) {
    const logs = existsSync(path.join(stateDir, 'logs')) ? readdirSync(path.join(stateDir, 'logs')).filter((f) => f.endsWith('.log')) : [];
    const snaps = listSnapshots(stateDir);
    const used: string[] = [];
    if (logs.length > 0) used.push(`${logs.length} instance log file(s) in logs/`);
    if (snaps.length > 0) used.push(`${snaps.length} snapshot(s) in snapshots/`);
    if (used.length > 0) findings.push(`state.db holds no state, but this directory was used before: ${used.join(', ')}`);
  }

  const unknown = unaccounted(store, procs);
  if (unknown.length > 0 && !o.stopUnknownInstances) {
    findings.push(`${unknown.length} running instance(s) of this state directory are not accounted for by state.db: ${describe(unknown)}. They may be the live release of a newer state; nothing was stopped`);
  }

  if (findings.length > 0) {
    const snaps = listSnapshots(stateDir);
    const newest = snaps[0];
    const ways = [
      '  cutover state check      what is there: the database, the marker, the snapshots, the running instances',
      newest
        ? `  cutover state restore    put back the newest snapshot (${newest.name}, generation ${newest.generation}, taken ${when(newest.takenAt)}); the damaged files are kept aside`
        : '  (no snapshot to restore: snapshots/ is empty)',
      unknown.length > 0 ? '  cutover up --stop-unknown-instances   start on this state anyway and stop the instances it does not account for' : null,
      `  to start over on purpose, move ${stateDir} away (instances it ran keep running: stop them, or start with --stop-unknown-instances)`,
    ].filter((l): l is string => l !== null);
    throw new CutoverError('CUTOVER_ERR_STATE_DAMAGED',
      `refusing to start: the state in ${stateDir} cannot be trusted. Nothing was stopped or changed.\n${findings.map((f) => `  - ${f}`).join('\n')}\nTo recover:\n${ways.join('\n')}`,
      { details: { stateDir, findings, unknownInstances: unknown } });
  }
  writeCurrentMarker(store, stateDir);
}

/** The marker for the database as it is now. */
export function writeCurrentMarker(store: SqliteStore, stateDir: string): void {
  const envs = store.environments();
  const live = COLORS.find((c) => envs[c].role === 'live');
  const m: Omit<StateMarker, 'format' | 'updatedAt'> = { dbId: store.dbId(), generation: store.generation(), live: live ? { color: live, version: envs[live].version } : null };
  writeMarker(stateDir, m);
}

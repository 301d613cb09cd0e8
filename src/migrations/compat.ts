/**
 * The two-version compatibility run: before the shared database changes, prove that the old
 * release (the rollback target) and the new one both work on the schema the pending migrations
 * produce. A shadow database gets the current schema and a sample of rows, the pending
 * migrations are applied there, one instance of each release is started against it (its
 * database URL overridden through the environment; on PostgreSQL the new release gets its own
 * copy), and the `http` gates, `GET /`, the health path, `compatibility.requests` and the
 * recorded live traffic (writes too) are run against each instance directly. Pending contract
 * files are then applied to the new release's copy and it is checked again.
 *
 * Owns: the shadow's life and the throw-away instances' life — both always end with the run
 * (pass, failure or abort). Must never: touch the real database, or the daemon's own instances.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { ProcessProvider } from '../environments/process-provider.ts';
import type { Color, Instance } from '../environments/types.ts';
import { runHttpGate } from '../gates/http-gate.ts';
import type { Gate } from '../config/gates.ts';
import type { GateResult, GateTarget } from '../gates/types.ts';
import { CutoverError, isCutoverError } from '../lib/errors.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import type { DatabaseConfig, DbEngine } from '../config/database.ts';
import { connect } from './db.ts';
import { statementsOf, type MigrationFile } from './files.ts';
import { cloneShadow, createShadow, type Shadow } from './shadow.ts';
import { runStatement, setLockTimeout, shorten } from './tracking.ts';
import { replayConfigured, replaySample, type ReplayResult } from './replay.ts';
import type { SampledRequest } from './traffic-sample.ts';

/** Poll step while waiting for a compatibility instance to answer its health check: 100 ms. */
const HEALTH_POLL_MS = 100;
/** Lines of an instance's log kept in a failure: 20. */
const LOG_LINES = 20;

export interface CompatVersion {
  /** `old`: what is live now (the rollback target); `new`: the release being deployed. */
  label: 'old' | 'new';
  version: string;
  path: string;
}

export interface CompatCheck { check: string; outcome: 'passed' | 'failed' | 'unjudged'; reason: string }

export interface CompatFailure {
  /** `shadow` when the migrations themselves failed on the shadow database. */
  label: 'old' | 'new' | 'shadow';
  version: string | null;
  check: string;
  reason: string;
  /** The migration statements most likely responsible (file:line statement). */
  statements: string[];
  log?: string[];
}

export interface CompatResult {
  outcome: 'passed' | 'failed';
  summary: string;
  shadow: { name: string; rows: Record<string, number>; notes: string[] };
  versions: { label: 'old' | 'new'; version: string; checks: CompatCheck[]; afterContract?: boolean }[];
  failure: CompatFailure | null;
  durationMs: number;
}

export interface CompatOptions {
  engine: DbEngine;
  db: DatabaseConfig;
  /** The pending expand migrations, in order. */
  pending: MigrationFile[];
  /**
   * Pending contract migrations: after both versions pass, they are applied to the shadow too and
   * the new release is checked again (it must work before and after its own contract).
   */
  contract?: MigrationFile[];
  /** Recorded live traffic, replayed against each version on the shadow (writes included). */
  sample?: readonly SampledRequest[];
  /** The contract statements to name when the new release fails after its contract. */
  contractSuspects?: string[];
  /**
   * The statements to name when a version fails ("file:line statement"): the caller passes those
   * the linter flagged (even when overridden), else every pending statement.
   */
  suspects: string[];
  versions: CompatVersion[];
  /** How instances are started (environments.process) and where their state goes. */
  process: { command: string; env: Record<string, string>; inheritEnv?: readonly string[]; secrets?: readonly string[]; stopTimeoutMs: number };
  stateDir: string;
  healthPath: string;
  /** The configured gates; the `http` ones are run. */
  gates: readonly Gate[];
  tablesWithoutRows: string[];
  signal: AbortSignal;
  logger?: Logger;
  /** Progress lines (shadow created, migrations applied, version checked). */
  progress?: (reason: string, data?: Record<string, unknown>) => void;
}

export async function runCompatibility(o: CompatOptions): Promise<CompatResult> {
  const t0 = performance.now();
  const progress = o.progress ?? (() => undefined);
  o.signal.throwIfAborted();
  const shadow = await createShadow({ engine: o.engine, url: o.db.url, sampleRows: o.db.compatibility.sampleRows, skipRowsOf: o.tablesWithoutRows });
  let second: Shadow | null = null;
  const result: CompatResult = { outcome: 'passed', summary: '', shadow: { name: shadow.name, rows: shadow.rows, notes: shadow.notes }, versions: [], failure: null, durationMs: 0 };
  try {
    const sampled = Object.values(shadow.rows).reduce((a, b) => a + b, 0);
    progress(`shadow database ${shadow.name}: current schema, ${sampled} sample row(s) from ${Object.keys(shadow.rows).length} table(s)${shadow.notes.length ? `; ${shadow.notes.join('; ')}` : ''}`, { shadow: shadow.name, rows: shadow.rows, notes: shadow.notes });
    o.signal.throwIfAborted();
    const applied = await applyToShadow(o, shadow);
    if (applied.failure) {
      result.outcome = 'failed';
      result.failure = applied.failure;
      result.summary = `the pending migrations fail on a copy of the database: ${applied.failure.reason}`;
      return result;
    }
    progress(o.pending.length > 0 ? `applied ${o.pending.length} pending migration(s) to the shadow database: ${o.pending.map((f) => f.name).join(', ')}` : 'no expand migration pending: the versions run on a copy of the current schema');
    second = await ownCopyForNew(o, shadow, result, progress);
    await runVersions(o, { old: shadow, new: second ?? shadow }, result);
    result.summary = result.failure ? failureSummary(result.failure) : passSummary(result, o);
    return result;
  } finally {
    result.durationMs = performance.now() - t0;
    // Always: also on failure and abort.
    for (const db of [second, shadow]) {
      await db?.drop().catch((err: unknown) => (o.logger ?? silentLogger).error({ err, shadow: db.name }, 'dropping the shadow database failed'));
    }
  }
}

/**
 * PostgreSQL, two versions: the new release gets its own copy of the migrated shadow, so the
 * recorded writes replayed to the old release (a row with a unique email) do not collide with
 * the same writes replayed to the new one. MySQL/MariaDB (no cheap copy) share one shadow.
 */
async function ownCopyForNew(o: CompatOptions, shadow: Shadow, result: CompatResult, progress: (reason: string) => void): Promise<Shadow | null> {
  if (o.engine !== 'postgres' || o.versions.length < 2) return null;
  try {
    const copy = await cloneShadow(o.db.url, shadow);
    progress(`the new release runs on its own copy ${copy.name} of the migrated shadow (replayed writes of the two versions do not meet)`);
    return copy;
  } catch (err) {
    const note = `the new release shares the shadow with the old one (copying it failed: ${(err as Error).message})`;
    result.shadow.notes.push(note);
    progress(note);
    return null;
  }
}

function passSummary(result: CompatResult, o: CompatOptions): string {
  const first = result.versions[0];
  const named = first?.checks.filter((c) => !c.check.startsWith('replay ')) ?? [];
  const replayed = first?.checks.filter((c) => c.check.startsWith('replay ')) ?? [];
  const unjudged = replayed.filter((c) => c.outcome === 'unjudged').length;
  const sample = (o.sample?.length ?? 0) > 0 ? `; replayed ${o.sample?.length} recorded request(s)${unjudged ? ` (${unjudged} not judged: redacted credentials)` : ''}` : '; no recorded traffic to replay yet';
  const contract = (o.contract?.length ?? 0) > 0 ? `; the new release also passes after its contract migration(s) ${o.contract?.map((f) => f.name).join(', ')} on the copy` : '';
  return `${result.versions.filter((v) => !v.afterContract).map((v) => `${v.label} ${v.version}`).join(' and ')} pass ${named.length} check(s) each on the migrated copy (${named.map((c) => c.check).join(', ')})${sample}${contract}`;
}

function failureSummary(f: CompatFailure): string {
  const who = f.label === 'old' ? `the old release ${f.version} (the rollback target)` : `the new release ${f.version}`;
  const stmts = f.statements.length ? `; migration statement(s): ${f.statements.join(' | ')}` : '';
  return `${who} fails ${f.check} against the migrated copy of the database: ${f.reason}${stmts}`;
}

async function applyToShadow(o: CompatOptions, shadow: Shadow): Promise<{ failure: CompatFailure | null }> {
  const db = await connect(o.engine, shadow.url);
  try {
    await setLockTimeout(db, o.db.lockTimeout);
    for (const file of o.pending) {
      const statements = await statementsOf(file, o.engine);
      let done = 0;
      for (const s of statements) {
        try {
          await runStatement(db, file.name, s, done, false);
        } catch (err) {
          if (!isCutoverError(err)) throw err;
          return { failure: { label: 'shadow', version: null, check: 'apply', reason: err.message, statements: [`${file.name}:${s.line} ${shorten(s.text)}`] } };
        }
        done++;
      }
    }
    return { failure: null };
  } finally {
    await db.close();
  }
}

async function runVersions(o: CompatOptions, dbs: Record<'old' | 'new', Shadow>, result: CompatResult): Promise<void> {
  const runDir = path.join(o.stateDir, 'compat', `${Date.now()}-${process.pid}`);
  // One throw-away provider per version: each points its instances at its own shadow database.
  const providers = new Map(o.versions.map((v) => [v.label, new ProcessProvider({
    stateDir: path.join(runDir, v.label), command: o.process.command, instances: 1,
    env: { ...o.process.env, [o.db.urlEnv]: dbs[v.label].url }, inheritEnv: o.process.inheritEnv, secrets: o.process.secrets, stopGraceMs: o.process.stopTimeoutMs, logger: o.logger,
  })] as const));
  const providerOf = (v: CompatVersion): ProcessProvider => providers.get(v.label) as ProcessProvider;
  try {
    const started = await Promise.all(o.versions.map(async (v) => ({ v, instances: await providerOf(v).start(compatColor(v), { version: v.version, path: v.path }) })));
    const healthy = await Promise.all(started.map(({ v, instances }) => waitHealthy(providerOf(v), instances[0], o).then((failure) => ({ v, inst: instances[0], failure }))));
    for (const { v, inst, failure } of healthy) {
      const entry = { label: v.label, version: v.version, checks: [] as CompatCheck[] };
      result.versions.push(entry);
      if (failure) {
        entry.checks.push({ check: `health ${o.healthPath}`, outcome: 'failed', reason: failure });
        result.failure ??= { label: v.label, version: v.version, check: `health ${o.healthPath}`, reason: failure, statements: o.suspects, log: await providerOf(v).logTail(inst.id, LOG_LINES) };
        continue;
      }
      for (const r of await runChecks(o, v, `http://${inst.host}:${inst.port}`)) {
        entry.checks.push(r);
        if (r.outcome === 'failed' && !result.failure) {
          result.failure = { label: v.label, version: v.version, check: r.check, reason: r.reason, statements: o.suspects, log: await providerOf(v).logTail(inst.id, LOG_LINES) };
        }
      }
    }
    const fresh = healthy.find((h) => h.v.label === 'new');
    if (!result.failure && fresh && !fresh.failure && (o.contract?.length ?? 0) > 0) {
      // The new release must also survive its own contract: apply it to its copy and check again.
      const contract = o.contract ?? [];
      const applied = await applyToShadow({ ...o, pending: contract }, dbs.new);
      if (applied.failure) {
        result.failure = applied.failure;
      } else {
        o.progress?.(`applied ${contract.length} contract migration(s) to the shadow database: ${contract.map((f) => f.name).join(', ')}; checking ${fresh.v.version} again`);
        const entry = { label: 'new' as const, version: fresh.v.version, checks: [] as CompatCheck[], afterContract: true };
        result.versions.push(entry);
        const suspects = o.contractSuspects ?? [];
        for (const r of await runChecks(o, fresh.v, `http://${fresh.inst.host}:${fresh.inst.port}`)) {
          entry.checks.push({ ...r, check: `after contract: ${r.check}` });
          if (r.outcome === 'failed' && !result.failure) {
            result.failure = { label: 'new', version: fresh.v.version, check: `after contract: ${r.check}`, reason: r.reason, statements: suspects, log: await providerOf(fresh.v).logTail(fresh.inst.id, LOG_LINES) };
          }
        }
      }
    }
    if (result.failure) result.outcome = 'failed';
    // Old first in the report: the rollback target is the point of the run.
    result.versions.sort((a, b) => (a.label === b.label ? 0 : a.label === 'old' ? -1 : 1));
  } finally {
    await Promise.all([...providers.values()].map(async (p) => {
      await Promise.all((['blue', 'green'] as const).map((c) => p.stop(c).catch(() => undefined)));
      await p.detach().catch(() => undefined);
    }));
    await rm(runDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The old release runs as "blue", the new one as "green" of the throw-away provider. */
function compatColor(v: CompatVersion): Color {
  return v.label === 'old' ? 'blue' : 'green';
}

/** Null when healthy; else why not (exited, or no 2xx within the start timeout). */
async function waitHealthy(provider: ProcessProvider, inst: Instance, o: CompatOptions): Promise<string | null> {
  const deadline = Date.now() + o.db.compatibility.startTimeout;
  let last = 'no answer yet';
  for (;;) {
    o.signal.throwIfAborted();
    if (!provider.isRunning(inst.id)) {
      const exit = provider.lastExit(inst.id);
      return `the instance exited${exit ? ` (${exit.signal ?? `code ${exit.code}`})` : ''} before answering ${o.healthPath}`;
    }
    try {
      const res = await request(`http://${inst.host}:${inst.port}${o.healthPath}`, { headersTimeout: 2_000, bodyTimeout: 2_000, reset: true, signal: o.signal });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) return null;
      last = `status ${res.statusCode}`;
    } catch (err) {
      if (o.signal.aborted) throw o.signal.reason;
      last = (err as Error).message;
    }
    if (Date.now() > deadline) return `no 2xx from ${o.healthPath} within ${o.db.compatibility.startTimeout}ms (last: ${last})`;
    await sleep(HEALTH_POLL_MS);
  }
}

/**
 * The http gates, then `GET /` (when no http gate is configured), the health path and
 * `compatibility.paths`, then `compatibility.requests`, then the recorded traffic: each must pass.
 */
async function runChecks(o: CompatOptions, v: CompatVersion, url: string): Promise<CompatCheck[]> {
  // `{color}` in a gate is the colour the throw-away instance was started as (CUTOVER_COLOR).
  const target: GateTarget = { url, listener: 'preview', liveUrl: null, hasLive: false, version: v.version, color: compatColor(v), cwd: v.path, signal: o.signal };
  const results: GateResult[] = [];
  const httpGates = o.gates.filter((g): g is Extract<Gate, { kind: 'http' }> => g.kind === 'http');
  for (const g of httpGates) results.push(await runHttpGate(g.name, g.http, target, Math.min(g.timeout, o.db.compatibility.requestTimeout)));
  const paths = [...(httpGates.length === 0 ? ['/'] : []), o.healthPath, ...o.db.compatibility.paths];
  for (const p of [...new Set(paths)]) results.push(await getAnswers2xx(url, p, o));
  const checks: CompatCheck[] = results.map((r) => ({ check: r.gate, outcome: r.outcome === 'failed' ? 'failed' : 'passed', reason: r.reason }));
  const ro = { timeoutMs: o.db.compatibility.requestTimeout, headers: o.db.compatibility.sample.headers, signal: o.signal };
  const asCheck = (prefix: string) => (r: ReplayResult): CompatCheck => ({ check: `${prefix}${r.check}`, outcome: r.outcome, reason: r.reason });
  checks.push(...(await replayConfigured(url, o.db.compatibility.requests, { ...ro, headers: undefined })).map(asCheck('')));
  checks.push(...(await replaySample(url, o.sample ?? [], ro)).map(asCheck('replay ')));
  return checks;
}

async function getAnswers2xx(url: string, p: string, o: CompatOptions): Promise<GateResult> {
  const name = `GET ${p}`;
  const t0 = performance.now();
  try {
    const res = await request(`${url}${p}`, { headersTimeout: o.db.compatibility.requestTimeout, bodyTimeout: o.db.compatibility.requestTimeout, reset: true, signal: o.signal });
    const body = (await res.body.text()).slice(0, 200);
    const ms = performance.now() - t0;
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    return { gate: name, kind: 'http', outcome: ok ? 'passed' : 'failed', reason: `${name} → ${res.statusCode}${ok ? '' : ` (expected 2xx): ${body.replace(/\s+/g, ' ').trim()}`}`, values: { status: res.statusCode, body }, thresholds: { status: '2xx' }, durationMs: ms };
  } catch (err) {
    if (o.signal.aborted) throw o.signal.reason;
    return { gate: name, kind: 'http', outcome: 'failed', reason: `${name} failed: ${(err as Error).message}`, values: { error: (err as Error).message }, thresholds: { status: '2xx' }, durationMs: performance.now() - t0 };
  }
}

export function assertRunnable(versions: CompatVersion[]): void {
  for (const v of versions) {
    if (!v.path) throw new CutoverError('CUTOVER_ERR_MIGRATION', `compatibility run: the ${v.label} release ${v.version} has no release directory to start`);
  }
}

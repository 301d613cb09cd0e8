/**
 * Migrations in the deployment pipeline. At the `migrate` seam (after health, before gates):
 * check that applied files did not change, lint the pending ones, run the two-version
 * compatibility check on a shadow database, apply the expand files, and hold the contract files
 * as pending. Contract files run later — at the `retired` seam, or on `cutover migrate
 * contract` — and only when no environment that can take traffic (live, standby or candidate)
 * runs a release without them (DESIGN promise 7).
 *
 * Must never: move traffic (a failed verdict makes the controller stop the candidate), apply
 * anything to the real database before the compatibility run passed, or apply a contract file
 * while a release that predates it can serve.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { LoadedConfig } from '../config/schema.ts';
import { configSecrets } from '../config/secrets.ts';
import type { PhaseContext, PhaseVerdict } from '../plugin-api/hooks.ts';
import type { Color } from '../environments/types.ts';
import { CutoverError, isCutoverError } from '../lib/errors.ts';
import type { EventInput, EnvironmentState } from '../store/types.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import { assertRunnable, runCompatibility, type CompatResult, type CompatVersion } from './compat.ts';
import { engineOf, type DatabaseConfig, type DbEngine } from '../config/database.ts';
import { connect, dbErrorText, redactUrl } from './db.ts';
import { readMigrations, statementsOf, type MigrationFile } from './files.ts';
import { lintSql, type Finding } from './lint.ts';
import { SchemaState } from './schema.ts';
import { schemaFromDatabase } from './live-schema.ts';
import { shorten, Tracking, type TrackedMigration } from './tracking.ts';
import type { SampledRequest } from './traffic-sample.ts';

export const MIGRATIONS_ACTOR = 'cutover';

/** What the migrator needs to know of the environments (from the controller's status). */
export type EnvView = Pick<EnvironmentState, 'color' | 'role' | 'version' | 'path'>;

export interface MigratorOptions {
  config: LoadedConfig;
  environments: () => EnvView[];
  /** Record an event outside a deployment (contract runs, API calls). */
  record: (e: EventInput) => void;
  /** The recorded live traffic the compatibility run replays (none: only the named checks run). */
  sample?: () => readonly SampledRequest[];
  /** After migrations changed the real database: expand files of a deployment, or contract files. */
  onMigrated?: (m: { deployment: string | null; phase: 'expand' | 'contract'; files: string[] }) => void;
  logger?: Logger;
}

export interface PendingContract {
  name: string;
  release: string;
  checksum: string;
  recordedAt: number;
  /** Why it may not run now (empty: it may). */
  blockedBy: string[];
}

export interface ContractOutcome {
  applied: { name: string; durationMs: number; statements: number }[];
  /** Still pending after this run, with what blocks each. */
  held: PendingContract[];
}

/** A lint finding as one line a person can act on. */
export function findingLine(f: Finding): string {
  return `${f.file}:${f.line}: ${f.severity} ${f.rule} ${f.message} → ${f.fix}`;
}

export class Migrator {
  readonly db: DatabaseConfig;
  readonly engine: DbEngine;
  private readonly config: LoadedConfig;
  private readonly opts: MigratorOptions;
  private readonly log: Logger;
  private pendingNames: string[] = [];
  /** Applied contract files (from the tracking table; refreshed after every migration step). */
  private appliedContractNames: string[] = [];
  private lastError: string | null = null;

  constructor(opts: MigratorOptions) {
    if (!opts.config.database) throw new CutoverError('CUTOVER_ERR_CONFIG', 'no database section in the config');
    this.opts = opts;
    this.config = opts.config;
    this.db = opts.config.database;
    this.engine = engineOf(this.db);
    this.log = (opts.logger ?? silentLogger).child({ component: 'migrations' });
  }

  /** For status(): pending contract files (cached; refreshed after every migration step). */
  statusSection(): { pending: string[]; error?: string } {
    return this.lastError ? { pending: this.pendingNames, error: this.lastError } : { pending: this.pendingNames };
  }

  /** The migrations folder of a release directory. */
  dirOf(releasePath: string): string {
    return path.resolve(releasePath, this.db.migrations);
  }

  /**
   * Why a release cannot serve the database as it is (empty: it can): contract migrations the
   * database has applied that the release's migrations folder does not carry (it predates them,
   * so it still uses what they removed). From the cached tracking rows: cheap, synchronous.
   */
  schemaProblems(release: { version: string | null; path: string | null }): string[] {
    // Without a release directory (static provider) what the release carries is unknown: no claim.
    if (this.appliedContractNames.length === 0 || release.path === null) return [];
    const dir = this.dirOf(release.path);
    const missing = this.appliedContractNames.filter((n) => !existsSync(path.join(dir, n)));
    if (missing.length === 0) return [];
    return [`${release.version ?? 'that release'} lacks the applied contract migration(s) ${missing.join(', ')}: the database no longer has the schema it was written for`];
  }

  /** Re-read the pending list from the tracking table (a missing table means nothing is pending). */
  async refresh(): Promise<void> {
    try {
      const rows = await this.withTracking((t) => t.list(), { create: false });
      this.pendingNames = rows.filter((r) => r.status === 'pending').map((r) => r.name);
      this.appliedContractNames = rows.filter((r) => r.status === 'applied' && r.phase === 'contract').map((r) => r.name);
      this.lastError = null;
    } catch (err) {
      if (isMissingTable(err)) { this.pendingNames = []; this.appliedContractNames = []; this.lastError = null; return; }
      this.lastError = isCutoverError(err) ? err.message : dbErrorText(err);
      this.log.warn({ err }, 'reading the migrations tracking table failed');
    }
  }

  // ───────────────────────────── the migrate phase ─────────────────────────────

  async migrate(ctx: PhaseContext): Promise<PhaseVerdict> {
    if (!ctx.release.path) return { outcome: 'skipped', summary: 'the release has no directory (static provider): migrations are not run by Cutover' };
    const dir = this.dirOf(ctx.release.path);
    const files = await readMigrations(dir);
    if (files.length === 0) return { outcome: 'skipped', summary: `no migration files in ${this.db.migrations} of ${ctx.release.version}` };
    try {
      return await this.withTracking((tracking) => tracking.withLock(() => this.migrateLocked(ctx, files, tracking)), { create: true });
    } finally {
      await this.refresh();
    }
  }

  private async migrateLocked(ctx: PhaseContext, files: MigrationFile[], tracking: Tracking): Promise<PhaseVerdict> {
    const tracked = new Map((await tracking.list()).map((t) => [t.name, t]));
    const changed = files.filter((f) => tracked.get(f.name)?.status === 'applied' && tracked.get(f.name)?.checksum !== f.checksum);
    if (changed.length > 0) {
      const f = changed[0];
      const t = tracked.get(f.name) as TrackedMigration;
      return {
        outcome: 'failed',
        summary: `${this.db.migrations}/${f.name} was applied by ${t.release} with checksum ${t.checksum.slice(0, 12)}…, but the file now has ${f.checksum.slice(0, 12)}…: an applied migration must not change; revert the edit and add a new migration`,
        data: { changed: changed.map((c) => ({ file: c.name, recorded: tracked.get(c.name)?.checksum, now: c.checksum })) },
      };
    }
    // The database may be ahead of this release: a contract it lacks has removed what it uses.
    const names = new Set(files.map((f) => f.name));
    const ahead = [...tracked.values()].filter((t) => t.status === 'applied' && t.phase === 'contract' && !names.has(t.name)).map((t) => t.name);
    if (ahead.length > 0) {
      const why = `${ctx.release.version} lacks the contract migration(s) ${ahead.join(', ')} the database has applied: it was written for a schema that no longer exists`;
      if (ctx.deployment.schemaForced !== true) {
        return { outcome: 'failed', summary: `${why}; deploy a release that carries them (\`--force\` deploys anyway, recorded)`, data: { lacksContract: ahead } };
      }
      ctx.record({ type: 'migrations.schema.overridden', phase: 'migrate', color: ctx.color, version: ctx.release.version, reason: `${why}; deployed anyway (--force)`, data: { lacksContract: ahead } });
    }
    const pending = files.filter((f) => tracked.get(f.name)?.status !== 'applied');
    const expand = pending.filter((f) => f.phase === 'expand');
    const contract = pending.filter((f) => f.phase === 'contract');
    if (pending.length === 0) return { outcome: 'passed', summary: `all ${files.length} migration(s) of ${ctx.release.version} are applied${ahead.length ? `; the database is ahead of it by ${ahead.join(', ')} (forced)` : ''}` };

    // 1. Lint (every file in order, so earlier CREATE TABLEs inform later checks; only pending ones count).
    const lint = await this.lint(files, new Set(pending.map((f) => f.name)));
    if ('failed' in lint) return lint.failed;
    const errors = lint.findings.filter((f) => f.severity === 'error' && !f.suppressed);
    const notes: string[] = [];
    ctx.record({
      type: 'migrations.lint', phase: 'migrate', color: ctx.color, version: ctx.release.version,
      reason: `linted ${pending.length} pending migration(s): ${errors.length} error(s), ${lint.findings.filter((f) => f.severity === 'warning' && !f.suppressed).length} warning(s)`,
      data: { findings: lint.findings },
    });
    if (errors.length > 0) {
      if (this.db.lint === 'error') {
        return {
          outcome: 'failed',
          summary: `migration lint: ${errors.map(findingLine).join('; ')} (the real database is untouched; \`database.lint: warn\` overrides, recorded)`,
          data: { lint: errors.map((f) => ({ file: f.file, line: f.line, rule: f.rule, message: f.message, fix: f.fix, statement: f.statement })) },
        };
      }
      ctx.record({
        type: 'migrations.lint.overridden', phase: 'migrate', color: ctx.color, version: ctx.release.version,
        reason: `database.lint is "warn": ${errors.length} lint error(s) overridden, the compatibility run decides: ${errors.map(findingLine).join('; ')}`,
        data: { lint: errors.map((f) => ({ file: f.file, line: f.line, rule: f.rule, message: f.message })) },
      });
      notes.push(`${errors.length} lint error(s) overridden`);
    }

    // 2. The compatibility run, on a shadow copy, before the shared database changes.
    let compat: CompatResult | null = null;
    if (expand.length > 0 || contract.length > 0) {
      const plan = this.compatPlan(ctx);
      if (typeof plan === 'string') {
        notes.push(`compatibility run skipped: ${plan}`);
        ctx.record({ type: 'migrations.compat', phase: 'migrate', color: ctx.color, version: ctx.release.version, reason: `compatibility run skipped: ${plan}`, data: { outcome: 'skipped' } });
      } else {
        const flagged = lint.findings.filter((f) => f.severity !== 'info' && expand.some((e) => f.file.endsWith(e.name))).map((f) => `${path.basename(f.file)}:${f.line} ${shorten(f.statement)}`);
        const suspects = flagged.length > 0 ? [...new Set(flagged)] : await this.allStatements(expand);
        const contractSuspects = await this.allStatements(contract);
        compat = await runCompatibility({
          engine: this.engine, db: this.db, pending: expand, contract, contractSuspects, sample: this.opts.sample?.() ?? [], suspects, versions: plan,
          process: this.processSettings(),
          stateDir: this.config.stateDir, healthPath: this.config.health.path, gates: this.config.gates,
          tablesWithoutRows: [this.db.table], signal: ctx.signal, logger: this.log,
          progress: (reason, data) => ctx.record({ type: 'migrations.compat.progress', phase: 'migrate', color: ctx.color, version: ctx.release.version, reason, data }),
        });
        ctx.record({
          type: 'migrations.compat', phase: 'migrate', color: ctx.color, version: ctx.release.version, durationMs: compat.durationMs,
          reason: `compatibility run ${compat.outcome}: ${compat.summary}`,
          data: { outcome: compat.outcome, shadow: compat.shadow, versions: compat.versions, failure: compat.failure },
        });
        if (compat.outcome === 'failed') {
          return { outcome: 'failed', summary: `compatibility run: ${compat.summary} (the real database is untouched)`, data: { compat: { failure: compat.failure, versions: compat.versions } } };
        }
      }
    }

    // 3. Apply expand files to the real database, in name order.
    const applied: string[] = [];
    for (const f of expand) {
      ctx.signal.throwIfAborted();
      try {
        const r = await tracking.apply(f, { release: ctx.release.version, actor: ctx.deployment.actor, lockTimeoutMs: this.db.lockTimeout });
        applied.push(f.name);
        ctx.record({ type: 'migrations.applied', phase: 'migrate', color: ctx.color, version: ctx.release.version, durationMs: r.durationMs, reason: `applied ${f.name} (${r.statements} statement(s)${r.transaction ? ', one transaction' : ''})`, data: { file: f.name, phase: 'expand', checksum: f.checksum, statements: r.statements, transaction: r.transaction } });
      } catch (err) {
        if (!isCutoverError(err)) throw err;
        return { outcome: 'failed', summary: `applying ${err.message}${applied.length ? ` (applied before it: ${applied.join(', ')})` : ''}`, data: { applied, ...(err.details ?? {}) } };
      }
    }

    // 4. Hold contract files: recorded as pending, applied once the old release is gone.
    for (const f of contract) {
      const t = tracked.get(f.name);
      if (t?.status === 'pending' && t.checksum === f.checksum) continue;
      await tracking.markPending(f, t?.release ?? ctx.release.version);
    }
    if (contract.length > 0) {
      ctx.record({
        type: 'migrations.held', phase: 'migrate', color: ctx.color, version: ctx.release.version,
        reason: `held ${contract.length} contract migration(s) until no release without them can take traffic: ${contract.map((f) => f.name).join(', ')}`,
        data: { pending: contract.map((f) => f.name) },
      });
    }
    if (applied.length > 0) this.opts.onMigrated?.({ deployment: ctx.deployment.id, phase: 'expand', files: applied });
    const parts = [
      applied.length ? `applied ${applied.length} expand migration(s): ${applied.join(', ')}` : 'no expand migration to apply',
      ...(compat ? [`compatibility run passed (${compat.versions.map((v) => `${v.label} ${v.version}`).join(', ')})`] : []),
      ...notes,
      ...(contract.length ? [`contract held: ${contract.map((f) => f.name).join(', ')}`] : []),
    ];
    return { outcome: 'passed', summary: parts.join('; '), data: { applied, held: contract.map((f) => f.name), lintOverridden: errors.length > 0 && this.db.lint === 'warn' } };
  }

  /** The versions to run against the shadow, or why the run cannot happen. */
  private compatPlan(ctx: PhaseContext): CompatVersion[] | string {
    if (!this.db.compatibility.enabled) return 'database.compatibility.enabled is false';
    if (!this.config.environments.process) return 'it starts releases as local processes and the environments are not run by Cutover (static provider)';
    const versions: CompatVersion[] = [];
    if (ctx.previous && ctx.previous.version) {
      if (!ctx.previous.path || !existsSync(ctx.previous.path)) {
        throw new CutoverError('CUTOVER_ERR_MIGRATION', `compatibility run: the old release ${ctx.previous.version} has no release directory (${ctx.previous.path ?? 'none'}) to start; set database.compatibility.enabled: false to skip the run`);
      }
      versions.push({ label: 'old', version: ctx.previous.version, path: ctx.previous.path });
    }
    versions.push({ label: 'new', version: ctx.release.version, path: ctx.release.path as string });
    assertRunnable(versions);
    return versions;
  }

  private processSettings(): { command: string; env: Record<string, string>; inheritEnv: readonly string[]; secrets: readonly string[]; stopTimeoutMs: number } {
    const p = this.config.environments.process;
    if (!p) throw new CutoverError('CUTOVER_ERR_INTERNAL', 'the compatibility run needs environments.process');
    return { command: p.command, env: p.env, inheritEnv: p.inheritEnv, secrets: configSecrets(this.config), stopTimeoutMs: p.stopTimeout };
  }

  /** The statements that change the schema (`SET`, `SELECT`, transaction control and the like are never suspects). */
  private async allStatements(files: MigrationFile[]): Promise<string[]> {
    const out: string[] = [];
    for (const f of files) {
      for (const s of await statementsOf(f, this.engine)) if (!NOT_SUSPECT.test(s.text)) out.push(`${f.name}:${s.line} ${shorten(s.text)}`);
    }
    return out;
  }

  private async lint(files: MigrationFile[], pending: Set<string>): Promise<{ findings: Finding[] } | { failed: PhaseVerdict }> {
    // What the database has now; the files then replay over it (so their own CREATE TABLEs win).
    let schema: SchemaState;
    try {
      const conn = await connect(this.engine, this.db.url);
      try { schema = await schemaFromDatabase(conn); } finally { await conn.close(); }
    } catch (err) {
      this.log.warn({ err }, 'reading the current column types failed; linting from the files alone');
      schema = new SchemaState();
    }
    const findings: Finding[] = [];
    for (const f of files) {
      const shown = path.join(this.db.migrations, f.name).replace(/^\.\//, '');
      try {
        const report = await lintSql(f.sql, { file: shown, engine: this.engine, schema, lockTimeoutSet: this.db.lockTimeout > 0 });
        if (pending.has(f.name)) findings.push(...report.findings);
      } catch (err) {
        if (!isCutoverError(err)) throw err;
        if (!pending.has(f.name)) continue; // applied already: its findings no longer matter
        return { failed: { outcome: 'failed', summary: `migration lint: ${err.message}`, data: { ...(err.details ?? {}) } } };
      }
    }
    return { findings };
  }

  // ───────────────────────────── contract migrations ─────────────────────────────

  /** Pending contract files and what blocks each. */
  async pendingContracts(): Promise<{ pending: PendingContract[]; applied: TrackedMigration[] }> {
    let rows: TrackedMigration[];
    try {
      rows = await this.withTracking((t) => t.list(), { create: false });
    } catch (err) {
      if (isMissingTable(err)) return { pending: [], applied: [] };
      throw err;
    }
    return {
      pending: rows.filter((r) => r.status === 'pending').map((r) => ({ name: r.name, release: r.release, checksum: r.checksum, recordedAt: r.recordedAt, blockedBy: this.blockers(r.name) })),
      applied: rows.filter((r) => r.status === 'applied'),
    };
  }

  /**
   * Environments that can take traffic (live, standby — a rollback target — and a candidate)
   * and run a release without the file: each one blocks it.
   */
  private blockers(name: string): string[] {
    const out: string[] = [];
    for (const env of this.opts.environments()) {
      if (env.role !== 'live' && env.role !== 'standby' && env.role !== 'candidate') continue;
      const has = env.path !== null && existsSync(path.join(this.dirOf(env.path), name));
      if (!has) out.push(`${env.color} (${env.role === 'standby' ? 'standby, a rollback target' : env.role}) runs ${env.version ?? 'nothing'}, which does not have ${name}`);
    }
    return out;
  }

  /**
   * Apply pending contract files in name order, up to the first one that is blocked. Throws
   * CUTOVER_ERR_INVALID_STATE when the first pending file is blocked (nothing applied).
   */
  async applyContract(actor: string, why: string): Promise<ContractOutcome> {
    try {
      return await this.withTracking((tracking) => tracking.withLock(async () => {
        const rows = (await tracking.list()).filter((r) => r.status === 'pending');
        const outcome: ContractOutcome = { applied: [], held: [] };
        for (const [i, row] of rows.entries()) {
          const blockedBy = this.blockers(row.name);
          if (blockedBy.length > 0) {
            outcome.held = rows.slice(i).map((r) => ({ name: r.name, release: r.release, checksum: r.checksum, recordedAt: r.recordedAt, blockedBy: this.blockers(r.name) }));
            if (outcome.applied.length === 0) {
              const msg = `contract migration ${row.name} is held: ${blockedBy.join('; ')}. It runs when that release is retired (after standby.keepFor, or now with \`cutover retire\`; then it runs by itself)`;
              this.opts.record({ type: 'migrations.contract.refused', actor, reason: `${msg} (${why})`, data: { file: row.name, blockedBy } });
              throw new CutoverError('CUTOVER_ERR_INVALID_STATE', msg, { details: { file: row.name, blockedBy } });
            }
            break;
          }
          const file = await this.contractFile(row.name);
          const lint = await lintSql(file.sql, { file: path.join(this.db.migrations, file.name), engine: this.engine, phase: 'contract', lockTimeoutSet: this.db.lockTimeout > 0 });
          const errors = lint.findings.filter((f) => f.severity === 'error' && !f.suppressed);
          if (errors.length > 0 && this.db.lint === 'error') {
            throw new CutoverError('CUTOVER_ERR_MIGRATION', `contract migration ${row.name} does not pass the linter: ${errors.map(findingLine).join('; ')}`, { details: { file: row.name } });
          }
          const r = await tracking.apply(file, { release: row.release, actor, lockTimeoutMs: this.db.lockTimeout });
          outcome.applied.push({ name: file.name, durationMs: r.durationMs, statements: r.statements });
          this.opts.record({
            type: 'migrations.contract', actor, durationMs: r.durationMs,
            reason: `applied contract migration ${file.name} (${r.statements} statement(s)) from ${row.release}: ${why}; a rollback to a release without it is no longer schema-safe`,
            data: { file: file.name, phase: 'contract', checksum: file.checksum, release: row.release, statements: r.statements },
          });
        }
        return outcome;
      }), { create: true }).then((outcome) => {
        if (outcome.applied.length > 0) this.opts.onMigrated?.({ deployment: null, phase: 'contract', files: outcome.applied.map((a) => a.name) });
        return outcome;
      });
    } finally {
      await this.refresh();
    }
  }

  /** The contract file from the live release's folder (it has it: otherwise the live colour blocks it). */
  private async contractFile(name: string): Promise<MigrationFile> {
    const live = this.opts.environments().find((e) => e.role === 'live');
    if (!live?.path) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `nothing with a release directory is live, so ${name} has no source`);
    const file = (await readMigrations(this.dirOf(live.path))).find((f) => f.name === name);
    if (!file) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `the live release ${live.version} does not have ${name}`);
    return file;
  }

  /** The `retired` seam: the old colour is gone; run what it was holding back. Never throws (it runs in the retirement path). */
  async onRetired(info: { color: Color; version: string | null }): Promise<void> {
    await this.refresh();
    if (this.pendingNames.length === 0) return;
    try {
      const out = await this.applyContract(MIGRATIONS_ACTOR, `${info.color} (${info.version ?? 'nothing'}) was retired`);
      if (out.held.length > 0) {
        this.opts.record({ type: 'migrations.held', actor: MIGRATIONS_ACTOR, reason: `still held after retiring ${info.color}: ${out.held.map((h) => `${h.name} (${h.blockedBy.join('; ')})`).join(', ')}`, data: { held: out.held } });
      }
    } catch (err) {
      if (isCutoverError(err, 'CUTOVER_ERR_INVALID_STATE')) return; // recorded as migrations.contract.refused
      this.opts.record({ type: 'migrations.contract.failed', actor: MIGRATIONS_ACTOR, reason: `contract migrations after retiring ${info.color} failed: ${isCutoverError(err) ? err.message : dbErrorText(err)}`, data: isCutoverError(err) ? (err.details ?? null) : null });
      this.log.error({ err }, 'contract migrations failed');
    }
  }

  private async withTracking<T>(fn: (t: Tracking) => Promise<T>, o: { create: boolean }): Promise<T> {
    const conn = await connect(this.engine, this.db.url);
    try {
      const t = new Tracking(conn, this.db.table);
      if (o.create) await t.ensure();
      return await fn(t);
    } finally {
      await conn.close();
    }
  }

  describe(): string {
    return `${this.engine} ${redactUrl(this.db.url)}, migrations in <release>/${this.db.migrations}`;
  }
}

/** Statements that cannot be what broke a version: session settings, reads, transaction control. */
const NOT_SUSPECT = /^\s*(?:SET|RESET|SELECT|SHOW|BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|ANALYZE|VACUUM|EXPLAIN|DO\s+\$\$\s*BEGIN\s+PERFORM)\b/i;

/** PostgreSQL 42P01 undefined_table, MySQL 1146 ER_NO_SUCH_TABLE. */
function isMissingTable(err: unknown): boolean {
  const e = err as { code?: string; errno?: number };
  return e.code === '42P01' || e.errno === 1146 || e.code === 'ER_NO_SUCH_TABLE';
}

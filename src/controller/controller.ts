/**
 * The controller: the deployment pipeline state machine and the only writer of the route table.
 * Every traffic move (switch, rollback, failover, retire) is serialised, persisted first
 * (write-ahead: the store says where traffic goes, then the router is swapped) and recorded
 * as an event with time, actor, reason and duration.
 *
 * It must never route to a colour without a healthy instance (DESIGN promise 2), never swap
 * without persisting (promise 5), and never start a process on the rollback path when the
 * standby is warm (promise 3).
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { COLORS, canHold, otherColor, type Color, type EnvironmentProvider, type Instance, type Release } from '../environments/types.ts';
import { CutoverError, isCutoverError } from '../lib/errors.ts';
import { formatDuration } from '../lib/duration.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { quote } from '../lib/quote.ts';
import { hostPort } from '../lib/address.ts';
import type { Logger } from '../lib/logger.ts';
import { silentLogger } from '../lib/logger.ts';
import type { MirrorSpec, RouteTable, Stickiness } from '../router/route-table.ts';
import type { ApplyReport, DataPlane, DrainReport, SwapResult } from '../router/data-plane.ts';
import type { HealthMonitor } from '../health/types.ts';
import { JUDGING_PHASES, POST_SWITCH_PHASES, PRE_SWITCH_PHASES, type DeploymentPhase, type DeploymentRecord, type EnvironmentState, type EventInput, type EventRecord, type Store } from '../store/types.ts';
import type { ControllerEvents, ControllerView } from '../plugin-api/controller-view.ts';
import type { PhaseContext, PhaseVerdict, PipelineHooks } from '../plugin-api/hooks.ts';
import type { EnvironmentStatus, Status } from '../plugin-api/status.ts';
import { Mutex } from './mutex.ts';
import { deriveRouteTable, sameRoutes } from './route-plan.ts';
import { crashPoint } from './fault-points.ts';
import { describeInstanceFailure, exitText, failureNote, type InstanceFailure } from './instance-failure.ts';

export const SYSTEM_ACTOR = 'cutover';
/** Retry of a failover that could not be written, while the live colour stays down: 1 second. */
const FAILOVER_RETRY_MS = 1_000;
/** Retry of a retirement that failed (e.g. a state write): 1 minute. */
const RETIRE_RETRY_MS = 60_000;

export interface ControllerOptions {
  app: string;
  store: Store;
  provider: EnvironmentProvider;
  health: HealthMonitor;
  /** The only handle on traffic in the whole daemon (router/data-plane.ts). */
  router: DataPlane;
  startTimeoutMs: number;
  standbyKeepForMs: number;
  /**
   * Keep the warm standby running while the next release starts beside it on its colour, and stop
   * it only once the candidate has switched (default true; `standby.keepWarmDuringDeploy`). Needs a
   * provider that can hold instances (process); false: the standby is stopped to make room.
   */
  keepStandbyWarm?: boolean;
  hooks?: PipelineHooks;
  logger?: Logger;
  /** Gradual switch (`switch:`): live traffic moves in these shares before the full switch; absent: instant. */
  gradual?: GradualSwitch | null;
}

export interface GradualSwitch {
  /** Shares below 1, ascending; the full switch follows the last. */
  steps: readonly number[];
  stepDurationMs: number;
  stickiness: Stickiness;
}

export interface DeployRequest {
  version: string;
  path: string | null;
  manual?: boolean;
  /** Deploy even though the release cannot serve the database schema (recorded). */
  force?: boolean;
  actor: string;
}

interface RunningDeployment {
  record: DeploymentRecord;
  abort: AbortController;
  /** Resolved by promote() when the deployment waits for it (manual). */
  promoteWaiter: { resolve: (v: { actor: string; force: boolean }) => void } | null;
  /** The candidate colour's state before provisioning, restored when the deployment fails. */
  priorCandidateState: EnvironmentState;
  /** The standby of the candidate colour is held (still running) beside the candidate. */
  held: boolean;
  done: Promise<DeploymentRecord>;
}

export class Controller extends EventEmitter<ControllerEvents> implements ControllerView {
  private readonly opts: ControllerOptions;
  private readonly store: Store;
  private readonly provider: EnvironmentProvider;
  private readonly health: HealthMonitor;
  private readonly router: DataPlane;
  private readonly log: Logger;
  private readonly hooks: PipelineHooks;
  private readonly traffic = new Mutex();
  private running: RunningDeployment | null = null;
  /** Set while an exclusive operation (a rollback drill) runs: new deployments are refused. */
  private exclusiveReason: string | null = null;
  private retireTimer: NodeJS.Timeout | null = null;
  /** Colours still draining on the live listener: never stop one before its drain ends (promise 1). */
  private readonly draining = new Map<Color, Promise<unknown>>();
  /** Read-only sections plugins add to status() (e.g. `migrations`); built-in keys always win. */
  private readonly statusSections = new Map<string, () => unknown>();
  private revision = 0;
  private closed = false;
  /** The gradual switch in force (part of live traffic on the candidate); null: none. */
  private split: { color: Color; share: number; stickiness: Stickiness } | null = null;
  /** Mirroring requested by a gate (copies of live requests to the preview colour). */
  private mirror: MirrorSpec | null = null;

  constructor(opts: ControllerOptions) {
    super();
    this.opts = opts;
    this.store = opts.store;
    this.provider = opts.provider;
    this.health = opts.health;
    this.router = opts.router;
    this.hooks = opts.hooks ?? {};
    this.log = opts.logger ?? silentLogger;
    this.revision = opts.router.table().revision;
  }

  /** The service this controller runs (`app`, or its name under `services:`). */
  get app(): string {
    return this.opts.app;
  }

  // ───────────────────────────── start-up and recovery ─────────────────────────────

  /**
   * Swap in the route table the stored state describes, from the recorded instances. Called
   * before the router listens, so that after a crash it serves the same live colour before
   * anything else (DESIGN promise 5).
   */
  async restoreRoutes(): Promise<{ table: RouteTable; applied: Promise<ApplyReport> }> {
    // A controller taking the lead of a fleet continues from the newest revision, not the one it saw at start.
    this.revision = Math.max(this.revision, this.router.table().revision);
    for (const color of COLORS) {
      // Optimistic: they served a moment ago. Active checks and passive ejection correct this within ms.
      for (const inst of this.store.instances(color)) this.health.watch(inst, { assumeHealthy: true });
    }
    const table = this.buildTable((c) => this.store.instances(c), ++this.revision);
    const { applied } = await this.router.swap(table);
    return { table, applied };
  }

  /**
   * Take over what the previous daemon left: adopt or restart instances of live and standby,
   * stop an interrupted candidate, mark an interrupted deployment, resume retirement.
   * `takeover` (fleet): this controller took the lead from `from`; the reasons say so.
   */
  async recover(o: { takeover?: { from: string | null; by: string } } = {}): Promise<void> {
    const heldBack = this.recoverHeldStandby();
    const envs = this.store.environments();
    const interrupted = this.store.activeDeployment();
    for (const color of COLORS) {
      const env = envs[color];
      const recorded = this.store.instances(color);
      if (env.role === 'candidate') {
        const adopted = await this.provider.adopt(color, recorded);
        if (adopted.length > 0) await this.provider.stop(color);
        this.forgetInstances(color, recorded);
        this.commit({ environments: [{ ...env, role: 'empty', version: null, path: null, since: Date.now(), retireAt: null }], instances: [{ color, instances: [] }] });
        continue;
      }
      if (env.role !== 'live' && env.role !== 'standby') {
        // Retired or empty: nothing may run. Adopt to find leftovers — recorded or not: the provider
        // also stops unrecorded processes carrying our mark — then stop them (never orphans).
        const adopted = await this.provider.adopt(color, recorded);
        if (adopted.length > 0) await this.provider.stop(color);
        if (recorded.length > 0) {
          this.forgetInstances(color, recorded);
          this.commit({ instances: [{ color, instances: [] }] });
        }
        continue;
      }
      const adopted = await this.provider.adopt(color, recorded);
      this.forgetInstances(color, recorded.filter((r) => !adopted.some((a) => a.id === r.id)));
      if (adopted.length === 0 && env.role === 'standby' && env.retireAt !== null && env.retireAt <= Date.now()) {
        // It was due for retirement (the daemon died while retiring it): finish that, do not restart it.
        this.commit({ environments: [{ ...env, role: 'retired', since: Date.now(), retireAt: null }], instances: [{ color, instances: [] }] });
        this.record({ type: 'recovery', actor: SYSTEM_ACTOR, color, version: env.version, reason: `standby ${color} (${env.version}) was due for retirement and none of its instances survived the daemon restart: marked retired, not restarted` });
        continue;
      }
      if (adopted.length === 0 && env.version !== null) {
        this.record({ type: 'recovery', actor: SYSTEM_ACTOR, color, version: env.version, reason: `no ${env.role} instance of ${color} survived the daemon restart; starting ${env.version} again` });
        let started: Instance[];
        try {
          started = await this.provider.start(color, { version: env.version, path: env.path });
        } catch (err) {
          // E.g. its release directory is gone. The daemon still comes up (issue #15: before, this
          // left it half-started with no admin API): the colour has no instance, which is recorded,
          // and a live colour left empty fails over to a healthy standby below.
          this.record({ type: 'recovery.failed', actor: SYSTEM_ACTOR, color, version: env.version, reason: `${env.role} ${color} (${env.version}) could not be started again: ${(err as Error).message}; it has no instance until the next deployment or rollback` });
          this.commit({ instances: [{ color, instances: [] }] });
          continue;
        }
        this.adoptInstances(color, started);
      } else {
        this.adoptInstances(color, adopted);
        this.record({
          type: 'recovery', actor: SYSTEM_ACTOR, color, version: env.version,
          reason: `adopted ${adopted.length} of ${recorded.length} running ${env.role} instance(s) of ${color}`,
          data: { adopted: adopted.map((i) => ({ id: i.id, pid: i.pid, port: i.port })) },
        });
      }
      this.provider.setAutoRestart(color, true);
    }
    if (interrupted) {
      const switched = this.store.environments()[interrupted.color].role === 'live';
      const who = o.takeover
        ? `leader ${o.takeover.from ?? '(unknown)'} lost leadership during ${interrupted.phase}; ended by ${o.takeover.by}`
        : `the daemon stopped during ${interrupted.phase}`;
      this.finishDeployment(interrupted, 'interrupted', SYSTEM_ACTOR,
        `${who}; ${switched ? `${interrupted.version} stayed live on ${interrupted.color}` : `traffic was not moved and the candidate was stopped${heldBack ? `; ${heldBack} is the warm standby again` : ''}`}`,
        { code: 'CUTOVER_ERR_ABORTED', message: `interrupted during ${interrupted.phase}` });
    }
    await this.updateRoutes('recovery');
    await this.failOverIfLiveEmpty();
    this.scheduleRetirement();
    this.wireProviderEvents();
    this.health.on('change', (id: string, healthy: boolean, reason?: string) => this.onHealthChange(id, healthy, reason));
  }

  /**
   * A standby held beside a candidate when the daemon stopped. Before the switch it is the standby
   * again (its instances are adopted below; the candidate's processes, claimed by no record, are
   * stopped by the adoption); after the switch its processes are stopped the same way. Returns
   * "colour (version)" when it was given back.
   */
  private recoverHeldStandby(): string | null {
    const held = this.store.heldStandby();
    if (!held) return null;
    const color = held.env.color;
    const env = this.store.environments()[color];
    if (env.role !== 'candidate') {
      this.commit({ held: null });
      return null;
    }
    this.forgetInstances(color, this.store.instances(color));
    const name = `${color} (${held.env.version})`;
    this.commit({
      environments: [held.env], instances: [{ color, instances: held.instances }], held: null,
      events: [{ type: 'recovery', deployment: held.deployment, actor: SYSTEM_ACTOR, color, version: held.env.version, reason: `the daemon stopped before ${env.version} on ${color} was switched to: ${name} is the warm standby again; the candidate's processes are stopped` }],
    });
    for (const inst of held.instances) this.health.watch(inst, { assumeHealthy: true });
    return name;
  }

  private wireProviderEvents(): void {
    this.provider.on('instance-exit', (inst, info) => {
      const how = exitText(info) ?? 'an unknown status (not our child: its exit code is not known)';
      this.health.markDown(inst.id, info.reason ?? `process exited (${exitText(info) ?? 'gone'})`);
      // Why it died is in its log: quote it (a file read of a few KiB, then the decisions).
      void describeInstanceFailure(this.provider, inst.id, info).then((failure) => {
        this.failCandidateOnExit(inst, info, failure);
        this.recordQuietly({
          type: 'instance.exit', actor: SYSTEM_ACTOR, color: inst.color, version: inst.version,
          reason: info.reason !== undefined
            ? `instance ${inst.id} (pid ${inst.pid}) is down: ${info.reason}; no traffic goes to it while it is down`
            : `instance ${inst.id} (pid ${inst.pid}) exited with ${how}${failureNote(failure)}; no traffic goes to it while it is down`,
          data: { instance: inst.id, ...info, log: failure.log, logPath: failure.logPath },
        });
      });
    });
    this.provider.on('instance-restart', (inst, info) => {
      this.recordQuietly({ type: 'instance.restart', actor: SYSTEM_ACTOR, color: inst.color, version: inst.version, reason: `instance ${inst.id} restarted (attempt ${info.attempt}, after ${formatDuration(info.delayMs)}), pid ${inst.pid} port ${inst.port}`, data: { instance: inst.id, pid: inst.pid, port: inst.port, ...info } });
    });
    this.provider.on('instances-changed', (color, instances) => {
      try {
        this.adoptInstances(color, instances);
      } catch (err) {
        // Unrecorded pids are found by their mark and stopped at the next restart (never orphans).
        this.log.error({ err, color }, 'instances changed but could not be recorded');
      }
      this.updateRoutes('instances changed').catch((err: unknown) => this.log.error({ err }, 'route update failed'));
    });
    this.provider.on('held-changed', (color, instances) => {
      // A held standby instance restarted: record its new pid for adoption after a crash.
      for (const inst of instances) this.health.watch(inst);
      const held = this.store.heldStandby();
      if (!held || held.env.color !== color) return;
      try {
        this.commit({ held: { ...held, instances } });
      } catch (err) {
        this.log.error({ err, color }, 'held instances changed but could not be recorded');
      }
    });
  }

  /**
   * A candidate instance that exits before the switch is a broken release: fail the deployment now
   * (traffic untouched, candidate stopped) instead of waiting for the health timeout or a gate.
   */
  private failCandidateOnExit(inst: Instance, info: { code: number | null; signal: string | null }, failure: InstanceFailure): void {
    const run = this.running;
    if (!run || run.record.color !== inst.color || run.record.version !== inst.version) return;
    // A held standby instance (same colour, maybe the same version) is not the candidate.
    if (!this.provider.instances(inst.color).some((i) => i.id === inst.id)) return;
    if (!PRE_SWITCH_PHASES.includes(run.record.phase) || run.abort.signal.aborted) return;
    const how = exitText(info) ?? 'an unknown status';
    run.abort.abort(new CutoverError('CUTOVER_ERR_PROVISION', `candidate instance ${inst.id} of ${inst.version} exited with ${how} during ${run.record.phase}${failureNote(failure)}`, {
      details: { instance: inst.id, phase: run.record.phase, exit: info, log: failure.log, logPath: failure.logPath },
    }));
  }

  /** Persist a colour's instances and health-watch them (re-watching any whose address changed). */
  private adoptInstances(color: Color, instances: Instance[], opts: { assumeHealthy?: boolean } = {}): void {
    const before = this.store.instances(color);
    for (const old of before) {
      const now = instances.find((i) => i.id === old.id);
      if (!now || now.port !== old.port || now.host !== old.host) this.health.unwatch(old.id);
    }
    for (const inst of instances) {
      const old = before.find((i) => i.id === inst.id);
      if (!old || old.port !== inst.port || old.host !== inst.host) this.health.watch(inst, opts);
    }
    this.commit({ instances: [{ color, instances }] });
  }

  private forgetInstances(_color: Color, instances: Instance[]): void {
    for (const i of instances) this.health.unwatch(i.id);
  }

  // ───────────────────────────── status ─────────────────────────────

  /**
   * Let a plugin add a section to status() under `name` (e.g. `migrations: { pending }`). The
   * function must be cheap and synchronous (status is polled); a built-in key cannot be replaced.
   */
  extendStatus(name: string, section: () => unknown): void {
    this.statusSections.set(name, section);
  }

  /** Each colour's role, release and directory, as stored (cheap; safe to call from a status section). */
  environments(): Record<Color, EnvironmentState> {
    return this.store.environments();
  }

  status(): Status {
    const envs = this.store.environments();
    const live = COLORS.find((c) => envs[c].role === 'live') ?? null;
    const standby = COLORS.find((c) => envs[c].role === 'standby' || envs[c].role === 'retired') ?? null;
    const envView = (c: Color): EnvironmentStatus => {
      const e = envs[c];
      const instances = this.store.instances(c).map((i) => ({ id: i.id, host: i.host, port: i.port, pid: i.pid, healthy: this.healthy(i.id), startedAt: i.startedAt }));
      return { color: c, role: e.role, version: e.version, path: e.path, since: e.since, retireAt: e.retireAt, instances, healthy: instances.filter((i) => i.healthy).length };
    };
    const environments = { blue: envView('blue'), green: envView('green') };
    const active = this.running?.record ?? null;
    const addrs = this.router.addresses();
    const sections: Record<string, unknown> = {};
    for (const [name, section] of this.statusSections) sections[name] = section();
    return {
      ...sections,
      app: this.opts.app,
      live: live ? { color: live, version: envs[live].version, since: envs[live].since, healthy: environments[live].healthy } : null,
      standby: standby ? { color: standby, version: envs[standby].version, state: envs[standby].role === 'standby' ? 'warm' : 'retired', retireAt: envs[standby].retireAt } : this.heldStatus(),
      deployment: active,
      environments,
      router: {
        revision: this.router.table().revision,
        live: `http://${hostPort(addrs.live)}`,
        preview: addrs.preview ? `http://${hostPort(addrs.preview)}` : null,
        ...(this.split !== null ? { split: { color: this.split.color, share: this.split.share } } : {}),
        ...(this.mirror !== null ? { mirror: { id: this.mirror.id, sample: this.mirror.sample } } : {}),
      },
      ...(this.router.routers ? { routers: this.router.routers() } : {}),
    };
  }

  /** The standby held beside a candidate: warm, the rollback target if the deployment fails. */
  private heldStatus() {
    const held = this.store.heldStandby();
    if (!held) return null;
    const ids = held.instances.map((i) => i.id);
    return {
      color: held.env.color, version: held.env.version, state: 'warm' as const, retireAt: held.env.retireAt,
      besideCandidate: this.running?.record.version ?? null,
      instances: ids.length, healthy: ids.filter((id) => this.healthy(id)).length,
    };
  }

  history(opts: { limit?: number; since?: number } = {}) {
    return this.store.deployments(opts);
  }

  deployment(id: string): { deployment: DeploymentRecord; events: EventRecord[] } {
    const d = this.running?.record.id === id ? this.running.record : this.store.deployment(id);
    if (!d) throw new CutoverError('CUTOVER_ERR_NOT_FOUND', `no deployment with id ${id}`);
    return { deployment: d, events: this.store.events({ deployment: id }) };
  }

  events(opts: { afterSeq?: number; deployment?: string; limit?: number } = {}): EventRecord[] {
    return this.store.events(opts);
  }

  /** Sequence number of the newest event (0 when none). */
  lastEventSeq(): number {
    return this.store.lastEventSeq();
  }

  // ───────────────────────────── deploy ─────────────────────────────

  /** Start a deployment; returns once it is recorded. `done` of the returned handle settles at the end. */
  deploy(req: DeployRequest): { deployment: DeploymentRecord; done: Promise<DeploymentRecord> } {
    if (this.closed) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', 'the daemon is shutting down');
    const version = req.version.trim();
    if (!/^[A-Za-z0-9][A-Za-z0-9._+\-/:]{0,127}$/.test(version)) {
      throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `version ${quote(req.version)} is not valid: use letters, digits and . _ + - / : (at most 128)`, { details: { field: 'version' } });
    }
    if (this.exclusiveReason !== null) {
      throw new CutoverError('CUTOVER_ERR_CONFLICT', `${this.exclusiveReason} is in progress; deploy again when it ends`);
    }
    if (this.running) {
      const r = this.running.record;
      throw new CutoverError('CUTOVER_ERR_CONFLICT', `deployment ${r.id} of ${r.version} is in progress (phase ${r.phase}); wait for it, or run \`cutover abort\``, { details: { deployment: r.id, version: r.version, phase: r.phase } });
    }
    const path = this.provider.checkRelease(req.path, version);
    const schemaProblems = this.hooks.schemaProblems?.({ version, path }) ?? [];
    if (schemaProblems.length > 0 && req.force !== true) {
      throw new CutoverError('CUTOVER_ERR_SCHEMA_MISMATCH', `deploy ${version} refused: ${schemaProblems.join('; ')}. Deploy a release that carries them; \`cutover deploy --force\` deploys anyway (recorded)`, { details: { version, problems: schemaProblems } });
    }
    const envs = this.store.environments();
    const liveColor = COLORS.find((c) => envs[c].role === 'live') ?? null;
    const color: Color = liveColor ? otherColor(liveColor) : 'blue';
    const now = Date.now();
    const record: DeploymentRecord = {
      id: newDeploymentId(now), version, path, color,
      fromColor: liveColor, fromVersion: liveColor ? envs[liveColor].version : null,
      status: 'running', phase: 'provision', manual: req.manual === true, actor: req.actor,
      createdAt: now, updatedAt: now, finishedAt: null, error: null, gates: null, forced: false, switchMs: null,
      ...(schemaProblems.length > 0 ? { schemaForced: true } : {}),
    };
    const abort = new AbortController();
    const running: RunningDeployment = { record, abort, promoteWaiter: null, priorCandidateState: envs[color], held: false, done: Promise.resolve(record) };
    this.running = running;
    try {
      this.commit({
        deployment: record,
        events: [
          { type: 'deployment.started', deployment: record.id, actor: req.actor, color, version, reason: `deploy ${version} to ${color}${liveColor ? ` (live: ${envs[liveColor].version} on ${liveColor})` : ' (first release)'}${record.manual ? ', manual promotion' : ''}`, data: { path } },
          ...(schemaProblems.length > 0 ? [{ type: 'schema.overridden', deployment: record.id, actor: req.actor, color, version, reason: `${req.actor} deployed ${version} with --force although ${schemaProblems.join('; ')}`, data: { problems: schemaProblems, action: 'deploy' } }] : []),
        ],
      });
    } catch (err) {
      // Not recorded (read-only or full disk): it never started, and must not block the next one.
      this.running = null;
      throw err;
    }
    this.emit('deployment', record);
    running.done = this.runPipeline(running);
    // Callers of `done` see a failure; nobody waiting must not turn it into an unhandled rejection
    // (which would end the process): e.g. the state could not be written while finishing.
    running.done.catch((err: unknown) => this.log.error({ err, deployment: record.id }, 'deployment ended with an error'));
    return { deployment: record, done: running.done };
  }

  private async runPipeline(run: RunningDeployment): Promise<DeploymentRecord> {
    const d = run.record;
    const release: Release = { version: d.version, path: d.path };
    const ctx = this.phaseContext(run, release);
    let switched = false;
    /** Part of live traffic went to the candidate (a gradual switch began). */
    let stepped = false;
    // The held standby of the candidate colour stops once the switch is done, alongside verify and analysis.
    let heldStopped: Promise<void> = Promise.resolve();
    try {
      await this.phase(run, 'provision', async () => {
        await this.holdOrReplaceStandby(run);
        this.scheduleRetirement(); // the colour is no longer a standby: its retirement timer goes
        const instances = await this.provider.start(d.color, release);
        crashPoint('provision', d.version); // test-only (fault-points.ts)
        this.adoptInstances(d.color, instances, { assumeHealthy: false });
        await this.updateRoutes('candidate provisioned');
        return { outcome: 'passed', summary: `started ${instances.length} instance(s) of ${d.version} on ${d.color}`, data: { instances: instances.map((i) => ({ id: i.id, port: i.port, pid: i.pid })) } };
      });
      await this.phase(run, 'health', async () => {
        const ids = this.provider.instances(d.color).map((i) => i.id);
        try {
          await this.health.waitHealthy(ids, this.opts.startTimeoutMs, run.abort.signal);
        } catch (err) {
          if (run.abort.signal.aborted) throw run.abort.signal.reason;
          throw await this.explainUnhealthy(err, ids);
        }
        return { outcome: 'passed', summary: `${ids.length}/${ids.length} instance(s) healthy` };
      });
      await this.phase(run, 'migrate', () => this.hooks.migrate ? this.hooks.migrate(ctx) : skipped('no database migrations configured'));
      // Manual mode: a failed gate leaves the candidate waiting (gates=failed) so that an operator
      // can inspect it on the preview listener and `promote --force` (recorded) or `abort` it.
      await this.phase(run, 'gates', async () => {
        const v = await (this.hooks.gates ? this.hooks.gates(ctx) : skipped('no gates configured'));
        this.updateDeployment(run, { gates: v.outcome });
        return v;
      }, { holdOnFailure: d.manual });
      await this.phase(run, 'promote', async () => {
        if (!d.manual) return { outcome: 'passed', summary: 'automatic promotion' };
        const reason = run.record.gates === 'failed'
          ? `the gates of ${d.version} on ${d.color} failed; it waits: \`cutover promote --force\` switches anyway (recorded), \`cutover abort\` stops it (preview: ${ctx.previewUrl ?? 'none'})`
          : `${d.version} on ${d.color} is ready; run \`cutover promote\` (preview: ${ctx.previewUrl ?? 'none'})`;
        const decision = await this.waitForPromotion(run, reason);
        this.updateDeployment(run, { forced: decision.force });
        return { outcome: 'passed', summary: `promoted by ${decision.actor}${decision.force ? ' (forced)' : ''}` };
      });
      await this.phase(run, 'switch', async () => {
        const gradual = this.opts.gradual;
        if (gradual && d.fromColor !== null && gradual.steps.length > 0) {
          stepped = true;
          await this.stepTraffic(run, ctx, gradual);
        }
        const { ms, ack } = await this.switchTo(d.color, { actor: d.actor, reason: `promote ${d.version}`, deployment: d.id, requireGates: true, forced: run.record.forced });
        switched = true;
        this.updateDeployment(run, { switchMs: ms });
        if (ack.missing.length > 0) {
          // Published and persisted, but not every router serves it: the operator decides (docs/fleet.md).
          await this.waitForPromotion(run, `${ack.missing.join(', ')} did not acknowledge route revision ${ack.revision} in time and may still send live traffic to ${d.fromColor ?? 'nothing'}: \`cutover promote\` accepts the switch as it is, \`cutover rollback\` switches back`);
        }
        // With routers apart from this process (a router process, a fleet), say who applied it.
        const acks = this.router.routers ? `; ${ackSummary(ack)}` : '';
        return { outcome: 'passed', summary: `live → ${d.color} (${d.version}) in ${formatDuration(ms)}${acks}`, data: { switchMs: ms, ...(this.router.routers ? { ack } : {}) } };
      });
      heldStopped = this.stopHeldStandby(run);
      await this.phase(run, 'verify', () => this.hooks.verify ? this.hooks.verify(ctx) : skipped('no post-switch checks configured'));
      await this.phase(run, 'analysis', () => this.hooks.analysis ? this.hooks.analysis(ctx) : skipped('no analysis configured'));
      await heldStopped;
      this.updateDeployment(run, { phase: 'stable' });
      return this.finishDeployment(run.record, 'succeeded', d.actor, `${d.version} is live on ${d.color}`);
    } catch (err) {
      await heldStopped;
      return await this.failDeployment(run, err, switched, stepped);
    } finally {
      if (this.running === run) this.running = null;
    }
  }

  /**
   * Make the idle colour the candidate. A warm standby on it stays running beside the candidate
   * (held, persisted for crash recovery) until the candidate has switched, so that a failed deploy
   * leaves the rollback target as it was; without a holding provider, or with
   * `standby.keepWarmDuringDeploy: false`, it is stopped to make room.
   */
  private async holdOrReplaceStandby(run: RunningDeployment): Promise<void> {
    const d = run.record;
    const prior = run.priorCandidateState;
    const running = this.provider.instances(d.color).length > 0;
    // Requests that reached the colour while it was live finish first: its lane drain ends when it
    // is live again, and the held instances stop right after that switch.
    await this.waitForDrain(d.color, d.id, `before ${d.version} is provisioned there`);
    const candidate: EnvironmentState = { color: d.color, role: 'candidate', version: d.version, path: d.path, since: Date.now(), retireAt: null };
    if (prior.role === 'standby' && running && this.opts.keepStandbyWarm !== false && canHold(this.provider)) {
      const held = await this.provider.hold(d.color);
      run.held = true;
      this.provider.setAutoRestart(d.color, false); // the candidate's own instances: a crash fails the deploy
      this.commit({
        environments: [candidate], instances: [{ color: d.color, instances: [] }],
        held: { deployment: d.id, env: prior, instances: held },
        events: [{ type: 'standby.held', deployment: d.id, actor: SYSTEM_ACTOR, color: d.color, version: prior.version, reason: `${d.color} (${prior.version}) stays warm beside ${d.version} until ${d.version} has switched; if the deployment fails it is the rollback target as before`, data: { instances: held.map((i) => i.id) } }],
      });
      return;
    }
    if (prior.role === 'standby' || running) {
      const why = prior.role === 'standby' && running && canHold(this.provider) ? ' (standby.keepWarmDuringDeploy: false)' : '';
      this.record({ type: 'standby.replaced', deployment: d.id, actor: SYSTEM_ACTOR, color: d.color, version: prior.version, reason: `${d.color} (${prior.version ?? 'nothing'}) is stopped to make room for ${d.version}${why}` });
    }
    this.provider.setAutoRestart(d.color, false);
    this.commit({ environments: [candidate] });
  }

  /** After the switch: the held standby of the new live colour has been replaced; stop it. */
  private async stopHeldStandby(run: RunningDeployment): Promise<void> {
    if (!run.held) return;
    await Promise.resolve(); // the caller goes on with verify meanwhile
    run.held = false;
    const held = this.store.heldStandby();
    const t0 = performance.now();
    try {
      if (canHold(this.provider)) await this.provider.stopHeld(run.record.color);
    } catch (err) {
      this.log.error({ err, color: run.record.color }, 'stopping the held standby failed');
    }
    for (const inst of held?.instances ?? []) this.health.unwatch(inst.id);
    this.commitQuietly({
      held: null,
      events: held ? [{ type: 'standby.replaced', deployment: run.record.id, actor: SYSTEM_ACTOR, color: run.record.color, version: held.env.version, durationMs: performance.now() - t0, reason: `${run.record.color} (${held.env.version}) stopped: ${run.record.version} replaced it; the rollback target is now ${run.record.fromColor ?? 'nothing'} (${run.record.fromVersion ?? '-'})` }] : [],
    });
  }

  /**
   * Wait for `cutover promote` (manual promotion, or a hook that pauses for an operator, e.g. analysis
   * with `inconclusive: pause`). The deployment shows `awaiting-promotion` meanwhile; abort or rollback rejects.
   */
  private async waitForPromotion(run: RunningDeployment, reason: string): Promise<{ actor: string; force: boolean }> {
    const d = run.record;
    this.updateDeployment(run, { status: 'awaiting-promotion' });
    this.record({ type: 'promote.waiting', deployment: d.id, phase: d.phase, actor: SYSTEM_ACTOR, color: d.color, version: d.version, reason });
    const decision = await new Promise<{ actor: string; force: boolean }>((resolve, reject) => {
      if (run.abort.signal.aborted) { reject(run.abort.signal.reason); return; }
      run.promoteWaiter = { resolve };
      run.abort.signal.addEventListener('abort', () => { run.promoteWaiter = null; reject(run.abort.signal.reason); }, { once: true });
    });
    this.updateDeployment(run, { status: 'running' });
    return decision;
  }

  /** Say why a release did not become healthy: the health error, exits, and the tail of each log. */
  private async explainUnhealthy(err: unknown, ids: string[]): Promise<unknown> {
    if (!isCutoverError(err, 'CUTOVER_ERR_HEALTH_TIMEOUT')) return err;
    const instances: InstanceFailure[] = [];
    for (const id of ids) {
      if (this.healthy(id)) continue;
      instances.push(await describeInstanceFailure(this.provider, id));
    }
    const first = instances[0];
    const how = exitText(first?.exit ?? null);
    const exitNote = first && how ? `; ${first.id} exited with ${how}` : '';
    const logNote = first ? failureNote(first).replace(/^; last log line/, `; last log line of ${first.id}`) : '';
    return new CutoverError('CUTOVER_ERR_HEALTH_TIMEOUT', `${err.message}${exitNote}${logNote}`, {
      cause: err, details: { ...(err.details ?? {}), instances, instance: first?.id, log: first?.log ?? [], logPath: first?.logPath ?? null },
    });
  }

  /** Run one phase: record start and end with duration; a failed verdict throws (unless held: manual gates). */
  private async phase(run: RunningDeployment, name: DeploymentPhase, body: () => Promise<PhaseVerdict>, opts: { holdOnFailure?: boolean } = {}): Promise<void> {
    const d = run.record;
    if (run.abort.signal.aborted) throw run.abort.signal.reason;
    this.updateDeployment(run, { phase: name });
    if (name !== 'provision' && name !== 'switch' && name !== 'stable') crashPoint(name, d.version); // test-only
    const t0 = performance.now();
    let v: PhaseVerdict;
    try {
      v = await body();
      // Aborted while the phase ran (abort, a candidate crash): its verdict no longer counts.
      if (run.abort.signal.aborted) throw run.abort.signal.reason;
    } catch (err) {
      const ms = performance.now() - t0;
      const e = toCutoverError(err, name);
      this.record({ type: 'phase', deployment: d.id, phase: name, actor: SYSTEM_ACTOR, color: d.color, version: d.version, durationMs: ms, reason: e.message, data: { outcome: 'failed', code: e.code, ...(e.details ?? {}) } });
      throw e;
    }
    const ms = performance.now() - t0;
    this.record({ type: 'phase', deployment: d.id, phase: name, actor: SYSTEM_ACTOR, color: d.color, version: d.version, durationMs: ms, reason: v.summary, data: { outcome: v.outcome, ...(v.data ?? {}) } });
    if (v.outcome === 'failed' && !opts.holdOnFailure) {
      const code = name === 'gates' ? 'CUTOVER_ERR_GATE_FAILED' : name === 'analysis' || name === 'verify' ? 'CUTOVER_ERR_ANALYSIS_FAILED' : name === 'migrate' ? 'CUTOVER_ERR_MIGRATION' : 'CUTOVER_ERR_INTERNAL';
      throw new CutoverError(code, `${name} failed: ${v.summary}`, { details: v.data });
    }
  }

  private async failDeployment(run: RunningDeployment, err: unknown, switched: boolean, stepped = false): Promise<DeploymentRecord> {
    const d = run.record;
    const e = toCutoverError(err, d.phase);
    const aborted = e.code === 'CUTOVER_ERR_ABORTED' && !stepped;
    if (!switched) {
      // A gradual switch that did not finish: its share goes back to 0 % at once (if not already).
      if (this.split !== null) await this.setSplit(null, { deployment: d.id, actor: SYSTEM_ACTOR, reason: `gradual switch stopped: ${e.message}` });
      this.mirror = null;
    }
    if (switched) {
      // After the switch a failed check means: go back to what was live (analysis, verify).
      if (this.store.environments()[d.color].role === 'live' && d.fromColor) {
        try {
          await this.rollbackNow({ actor: SYSTEM_ACTOR, reason: `automatic rollback: ${e.message}`, deployment: d.id });
        } catch (rbErr) {
          this.record({ type: 'rollback.failed', deployment: d.id, actor: SYSTEM_ACTOR, reason: `automatic rollback failed: ${(rbErr as Error).message}` });
        }
      }
      return this.finishDeployment(run.record, aborted ? 'aborted' : 'rolled-back', SYSTEM_ACTOR, e.message, { code: e.code, message: e.message });
    }
    // Before the full switch: stop the candidate and put the colour back. Requests a gradual
    // switch sent to it finish first (promise 1).
    const prior = run.priorCandidateState;
    if (stepped) await this.waitForDrain(d.color, d.id, 'before the candidate is stopped');
    if (run.held && await this.restoreHeldStandby(run)) {
      if (stepped) {
        return this.finishDeployment(run.record, 'rolled-back', SYSTEM_ACTOR, `${e.message}; the gradual switch went back to 0 %, candidate stopped; ${d.color} (${prior.version}) is still the warm standby`, { code: e.code, message: e.message });
      }
      const note = `traffic untouched, candidate stopped; ${d.color} (${prior.version}) is still the warm standby`;
      return this.finishDeployment(run.record, aborted ? 'aborted' : 'failed', aborted ? (e.details?.actor as string | undefined) ?? SYSTEM_ACTOR : SYSTEM_ACTOR,
        aborted ? `aborted during ${d.phase}; ${note}` : `${e.message}; ${note}`, { code: e.code, message: e.message });
    }
    try {
      await this.provider.stop(d.color);
    } catch (stopErr) {
      this.log.error({ err: stopErr, color: d.color }, 'stopping the candidate failed');
    }
    this.forgetInstances(d.color, this.store.instances(d.color));
    const restored: EnvironmentState = prior.version !== null && (prior.role === 'standby' || prior.role === 'retired')
      ? { ...prior, role: 'retired', since: Date.now(), retireAt: null }
      : { color: d.color, role: 'empty', version: null, path: null, since: Date.now(), retireAt: null };
    this.commit({ environments: [restored], instances: [{ color: d.color, instances: [] }] });
    await this.updateRoutes('candidate stopped');
    if (stepped) {
      return this.finishDeployment(run.record, 'rolled-back', SYSTEM_ACTOR, `${e.message}; the gradual switch went back to 0 %, candidate stopped`, { code: e.code, message: e.message });
    }
    const reason = aborted ? `aborted during ${d.phase}; traffic untouched, candidate stopped` : `${e.message}; traffic untouched, candidate stopped`;
    return this.finishDeployment(run.record, aborted ? 'aborted' : 'failed', aborted ? (e.details?.actor as string | undefined) ?? SYSTEM_ACTOR : SYSTEM_ACTOR, reason, { code: e.code, message: e.message });
  }

  /** A failed or aborted deployment gives the held standby back: exactly the state before it began. */
  private async restoreHeldStandby(run: RunningDeployment): Promise<boolean> {
    const d = run.record;
    run.held = false;
    if (!canHold(this.provider)) return false;
    try {
      // Stops the candidate; its instances-changed events re-record the colour's instances.
      const instances = await this.provider.restoreHeld(d.color);
      this.commit({ environments: [run.priorCandidateState], instances: [{ color: d.color, instances }], held: null });
    } catch (err) {
      this.log.error({ err, color: d.color }, 'the held standby could not be given back; stopping it');
      await this.provider.stopHeld(d.color).catch(() => undefined);
      this.commit({ held: null });
      return false;
    }
    this.provider.setAutoRestart(d.color, true);
    await this.updateRoutes('candidate stopped, standby restored');
    this.scheduleRetirement();
    this.record({ type: 'standby.restored', deployment: d.id, actor: SYSTEM_ACTOR, color: d.color, version: run.priorCandidateState.version, reason: `${d.color} (${run.priorCandidateState.version}) is still the warm standby: \`cutover rollback\` stays instant` });
    return true;
  }

  private finishDeployment(record: DeploymentRecord, status: DeploymentRecord['status'], actor: string, reason: string, error: DeploymentRecord['error'] = null): DeploymentRecord {
    const now = Date.now();
    const next: DeploymentRecord = { ...record, status, updatedAt: now, finishedAt: now, error };
    this.commit({
      deployment: next,
      events: [{ type: 'deployment.finished', deployment: record.id, phase: record.phase, actor, color: record.color, version: record.version, durationMs: now - record.createdAt, reason, data: { status, error } }],
    });
    if (this.running?.record.id === record.id) this.running.record = next;
    this.emit('deployment', next);
    this.log.info({ deployment: record.id, version: record.version, color: record.color, status }, reason);
    return next;
  }

  private updateDeployment(run: RunningDeployment, patch: Partial<DeploymentRecord>): void {
    run.record = { ...run.record, ...patch, updatedAt: Date.now() };
    this.commit({ deployment: run.record });
    this.emit('deployment', run.record);
  }

  private phaseContext(run: RunningDeployment, release: Release): PhaseContext {
    const addrs = this.router.addresses();
    const d = run.record;
    const envs = this.store.environments();
    return {
      get deployment() { return run.record; },
      release,
      color: d.color,
      previous: d.fromColor ? { color: d.fromColor, version: d.fromVersion ?? '', path: envs[d.fromColor].path } : null,
      previewUrl: addrs.preview ? `http://${hostPort(addrs.preview)}` : null,
      liveUrl: `http://${hostPort(addrs.live)}`,
      signal: run.abort.signal,
      record: (e) => { this.record({ ...e, actor: e.actor ?? SYSTEM_ACTOR, deployment: run.record.id }); },
      awaitPromotion: (reason) => this.waitForPromotion(run, reason),
    };
  }

  /**
   * Run `fn` with new deployments refused (a rollback drill flips live and back; a deployment
   * starting in between would pick the wrong idle colour). Refused itself while one is running.
   */
  async exclusive<T>(reason: string, fn: () => Promise<T>): Promise<T> {
    if (this.exclusiveReason !== null) throw new CutoverError('CUTOVER_ERR_CONFLICT', `${this.exclusiveReason} is in progress`);
    if (this.running) {
      const r = this.running.record;
      throw new CutoverError('CUTOVER_ERR_CONFLICT', `deployment ${r.id} of ${r.version} is in progress (phase ${r.phase}); ${reason} needs none`, { details: { deployment: r.id, phase: r.phase } });
    }
    this.exclusiveReason = reason;
    try {
      return await fn();
    } finally {
      this.exclusiveReason = null;
    }
  }

  /** Wait for the running deployment (tests, CLI --wait via API). */
  current(): { deployment: DeploymentRecord; done: Promise<DeploymentRecord> } | null {
    return this.running ? { deployment: this.running.record, done: this.running.done } : null;
  }

  // ───────────────────────────── promote / abort ─────────────────────────────

  promote(opts: { actor: string; force?: boolean }): DeploymentRecord {
    const run = this.running;
    if (!run) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', 'no deployment is in progress');
    if (!run.promoteWaiter) {
      throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `deployment ${run.record.id} is in phase ${run.record.phase}, not waiting for promotion${run.record.manual ? '' : ' (it promotes automatically)'}`);
    }
    if (run.record.phase === 'promote' && run.record.gates === 'failed' && !opts.force) {
      throw new CutoverError('CUTOVER_ERR_GATE_FAILED', `the gates of ${run.record.version} failed; promote refuses it unless forced (--force, recorded)`);
    }
    this.record({ type: 'promote', deployment: run.record.id, actor: opts.actor, color: run.record.color, version: run.record.version, reason: `${opts.actor} promoted ${run.record.version}${opts.force ? ' (forced)' : ''}` });
    run.promoteWaiter.resolve({ actor: opts.actor, force: opts.force === true });
    run.promoteWaiter = null;
    return run.record;
  }

  abort(opts: { actor: string; reason?: string }): DeploymentRecord {
    const run = this.running;
    if (!run) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', 'no deployment is in progress');
    if (POST_SWITCH_PHASES.includes(run.record.phase)) {
      throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `deployment ${run.record.id} has already switched traffic (phase ${run.record.phase}); use \`cutover rollback\``);
    }
    this.record({ type: 'abort', deployment: run.record.id, actor: opts.actor, color: run.record.color, version: run.record.version, reason: opts.reason ?? `${opts.actor} aborted the deployment during ${run.record.phase}` });
    run.abort.abort(new CutoverError('CUTOVER_ERR_ABORTED', `aborted by ${opts.actor} during ${run.record.phase}`, { details: { actor: opts.actor } }));
    return run.record;
  }

  // ───────────────────────────── traffic moves ─────────────────────────────

  /**
   * Make `color` live: persist first, then one route swap. Returns the time from the call
   * to the swap being in force (ms). The old live colour becomes the warm standby.
   */
  private async switchTo(color: Color, o: { actor: string; reason: string; deployment: string | null; requireGates: boolean; forced: boolean; type?: string }): Promise<{ ms: number; ack: ApplyReport }> {
    const t0 = performance.now();
    const sw = await this.traffic.run(async () => {
      const envs = this.store.environments();
      const target = envs[color];
      const healthy = this.healthyCount(color);
      if (healthy === 0) {
        throw new CutoverError('CUTOVER_ERR_NO_HEALTHY_INSTANCE', `${color} (${target.version}) has no healthy instance; traffic stays where it is`, { details: { color } });
      }
      if (o.requireGates && this.running?.record.gates === 'failed' && !o.forced) {
        throw new CutoverError('CUTOVER_ERR_GATE_FAILED', `the gates of ${target.version} failed; the switch refuses it unless forced`);
      }
      const from = otherColor(color);
      const now = Date.now();
      const changes: EnvironmentState[] = [{ ...target, role: 'live', since: now, retireAt: null }];
      if (envs[from].role === 'live') changes.push({ ...envs[from], role: 'standby', since: now, retireAt: now + this.opts.standbyKeepForMs });
      // Write-ahead: if this throws (disk full, read-only), the router was never touched.
      this.commit({ environments: changes });
      crashPoint('switch', target.version); // test-only: committed, not yet swapped
      // The full switch ends any gradual one (and any mirroring: there is no candidate any more).
      this.split = null;
      this.mirror = null;
      let swapped: SwapResult;
      try {
        swapped = await this.router.swap(this.buildTable((c) => this.routable(c), ++this.revision));
      } catch (err) {
        // Not published (a fleet whose etcd has no quorum): no router saw it, so the state goes back.
        try { this.commit({ environments: [envs[color], envs[from]] }); } catch (undoErr) { this.log.error({ err: undoErr }, 'could not restore the state after a refused switch'); }
        throw err;
      }
      const ms = performance.now() - t0;
      this.record({
        type: o.type ?? 'switch', deployment: o.deployment, phase: 'switch', actor: o.actor, color, version: target.version, durationMs: ms,
        reason: `${o.reason}: live ${envs[from].role === 'live' ? `${from} (${envs[from].version})` : 'nothing'} → ${color} (${target.version})`,
        data: { from: envs[from].role === 'live' ? from : null, to: color, revision: this.revision, healthyInstances: healthy, forced: o.forced },
      });
      this.provider.setAutoRestart(color, true);
      if (swapped.drain) this.watchDrain(swapped.drain, from, o.deployment);
      if (swapped.drain) crashPoint('drain', target.version); // test-only: swapped, the old colour draining
      this.scheduleRetirement();
      return { ms, applied: swapped.applied, version: target.version ?? '' };
    });
    // In force once every router serves it: in-process at once; a router process or a fleet
    // acknowledges. Awaited outside the traffic lock: a router that is away must not hold up a
    // rollback queued behind this switch.
    const ack = await sw.applied;
    this.recordAck(ack, { deployment: o.deployment, color, version: sw.version, what: o.type ?? 'switch' });
    return { ms: sw.ms, ack };
  }

  /** Who applied a traffic move's revision and how fast; who did not, by name (a router process or a fleet only). */
  private recordAck(ack: ApplyReport, o: { deployment: string | null; color: Color; version: string; what: string }): void {
    if (!this.router.routers) return; // in-process: applied by the swap itself
    const missing = ack.missing.length > 0;
    this.recordQuietly({
      type: missing ? 'switch.unacknowledged' : 'switch.acknowledged', deployment: o.deployment, phase: 'switch', actor: SYSTEM_ACTOR, color: o.color, version: o.version, durationMs: ack.ms ?? null,
      reason: `${o.what} to ${o.color} (route revision ${ack.revision}): ${ackSummary(ack)}${ack.left?.length ? `; ${ack.left.join(', ')} left the fleet (lease expired) without acknowledging` : ''}`,
      data: { ...ack },
    });
  }

  private watchDrain(drain: Promise<DrainReport>, color: Color, deployment: string | null): void {
    const settled = drain.finally(() => { if (this.draining.get(color) === settled) this.draining.delete(color); });
    this.draining.set(color, settled.catch(() => undefined));
    drain.then((r) => {
      this.recordQuietly({
        type: 'drain', deployment, actor: SYSTEM_ACTOR, color: r.color, durationMs: r.durationMs,
        reason: r.completed ? `${r.color} drained: every in-flight request finished` : `${r.color} drain timed out: closed ${r.closedRequests} request(s) and ${r.closedWebSockets} WebSocket(s)`,
        data: { ...r },
      });
    }, (err: unknown) => this.log.error({ err }, 'drain failed'));
  }

  /** Requests that arrived on `color` while it was live finish before its processes stop. */
  private async waitForDrain(color: Color, deployment: string | null, why: string): Promise<void> {
    const pending = this.draining.get(color);
    if (!pending) return;
    const t0 = performance.now();
    await pending;
    this.record({ type: 'drain.wait', deployment, actor: SYSTEM_ACTOR, color, durationMs: performance.now() - t0, reason: `waited for ${color} to finish its in-flight requests ${why}` });
  }

  /**
   * Roll back: the standby becomes live again in one swap. If the standby was retired, it is
   * started first (not instant; the response says so).
   */
  async rollback(opts: { actor: string; reason?: string; force?: boolean }): Promise<{ ms: number; restarted: boolean; live: { color: Color; version: string | null }; ack: ApplyReport }> {
    const run = this.running;
    if (run && !POST_SWITCH_PHASES.includes(run.record.phase)) {
      throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `deployment ${run.record.id} has not switched traffic yet (phase ${run.record.phase}); use \`cutover abort\``);
    }
    if (run && this.split !== null && this.split.color === run.record.color) {
      // During a gradual switch: the candidate's share goes to 0 % in one swap; the old colour never stopped being live.
      const t0 = performance.now();
      const reason = opts.reason ?? `rollback requested by ${opts.actor}`;
      // Stop the steps first (no next step may start), then 0 % in one swap.
      run.abort.abort(new CutoverError('CUTOVER_ERR_ABORTED', `rolled back by ${opts.actor} during the gradual switch`, { details: { actor: opts.actor } }));
      await this.setSplit(null, { deployment: run.record.id, actor: opts.actor, reason, type: 'rollback' });
      const ms = performance.now() - t0;
      const envs = this.store.environments();
      const live = COLORS.find((c) => envs[c].role === 'live') ?? otherColor(run.record.color);
      return { ms, restarted: false, live: { color: live, version: envs[live].version }, ack: { revision: this.router.table().revision, acknowledged: [], missing: [] } };
    }
    const envs = this.store.environments();
    const live = COLORS.find((c) => envs[c].role === 'live');
    const target = live ? envs[otherColor(live)] : null;
    const problems = target && target.version !== null ? this.hooks.schemaProblems?.({ version: target.version, path: target.path }) ?? [] : [];
    if (problems.length > 0) {
      if (opts.force !== true) {
        throw new CutoverError('CUTOVER_ERR_SCHEMA_MISMATCH', `rollback to ${target?.version} refused: ${problems.join('; ')}. Deploy a release that carries them instead; \`cutover rollback --force\` rolls back anyway (recorded)`, { details: { version: target?.version, color: target?.color, problems } });
      }
      this.record({ type: 'schema.overridden', deployment: run?.record.id ?? null, actor: opts.actor, color: target?.color, version: target?.version, reason: `${opts.actor} rolled back to ${target?.version} with --force although ${problems.join('; ')}`, data: { problems, action: 'rollback' } });
    }
    const releaseOff = run ? null : this.newestLiveRelease();
    const reason = opts.reason ?? `rollback requested by ${opts.actor}`;
    const result = await this.rollbackNow({ actor: opts.actor, reason, deployment: run?.record.id ?? null });
    if (releaseOff) {
      // Its pipeline succeeded, but it no longer serves: history must say so (issue 16).
      this.commitQuietly({ deployment: { ...releaseOff, rolledBack: { at: Date.now(), actor: opts.actor, reason }, updatedAt: Date.now() } });
    }
    if (run) {
      run.abort.abort(new CutoverError('CUTOVER_ERR_ABORTED', `rolled back by ${opts.actor}`, { details: { actor: opts.actor } }));
    }
    return result;
  }

  /** The finished deployment whose release is live now, if it is the newest release that went live (not a roll-forward). */
  private newestLiveRelease(): DeploymentRecord | null {
    const envs = this.store.environments();
    const live = COLORS.find((c) => envs[c].role === 'live');
    const newest = this.store.deployments({ limit: 100 }).find((d) => d.switchMs !== null);
    if (!live || !newest || newest.color !== live || newest.version !== envs[live].version || newest.status !== 'succeeded' || newest.rolledBack) return null;
    return newest;
  }

  private async rollbackNow(o: { actor: string; reason: string; deployment: string | null }) {
    const t0 = performance.now();
    const envs = this.store.environments();
    const live = COLORS.find((c) => envs[c].role === 'live');
    if (!live) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', 'nothing is live: there is nothing to roll back');
    const target = otherColor(live);
    const env = envs[target];
    if (env.version === null || (env.role !== 'standby' && env.role !== 'retired')) {
      throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `there is no previous release to roll back to (${target} is ${env.role})`);
    }
    let restarted = false;
    if (env.role === 'retired' || this.provider.instances(target).length === 0) {
      restarted = true;
      this.record({ type: 'rollback.restart', deployment: o.deployment, actor: o.actor, color: target, version: env.version, reason: `standby ${target} (${env.version}) was retired; starting it again before switching back (not instant)` });
      this.commit({ environments: [{ ...env, role: 'standby', since: Date.now(), retireAt: null }] });
      const instances = await this.provider.start(target, { version: env.version, path: env.path });
      this.adoptInstances(target, instances, { assumeHealthy: false });
      const ids = instances.map((i) => i.id);
      await this.health.waitHealthy(ids, this.opts.startTimeoutMs).catch(async (err: unknown) => { throw await this.explainUnhealthy(err, ids); });
    }
    const { ack } = await this.switchTo(target, { actor: o.actor, reason: o.reason, deployment: o.deployment, requireGates: false, forced: false, type: 'rollback' });
    const ms = performance.now() - t0;
    return { ms, restarted, live: { color: target, version: env.version }, ack };
  }

  /** After recovery: a live colour left without any instance (it could not be started again) hands over to a standby that has some (promise 2). */
  private async failOverIfLiveEmpty(): Promise<void> {
    const envs = this.store.environments();
    const live = COLORS.find((c) => envs[c].role === 'live');
    if (!live || this.provider.instances(live).length > 0) return;
    const standby = otherColor(live);
    if (envs[standby].role !== 'standby' || this.healthyCount(standby) === 0) return;
    await this.switchTo(standby, { actor: SYSTEM_ACTOR, reason: `failover at start-up: live ${live} (${envs[live].version}) has no instance`, deployment: null, requireGates: false, forced: false, type: 'failover' });
  }

  /** Promise 2: when every live instance is down and the standby is healthy, serve the standby. */
  private onHealthChange(id: string, healthy: boolean, reason?: string): void {
    if (healthy || this.closed) return;
    const envs = this.store.environments();
    const live = COLORS.find((c) => envs[c].role === 'live');
    if (!live || !id.startsWith(`${live}-`)) return;
    if (this.healthyCount(live) > 0) return;
    const standby = otherColor(live);
    const run = this.running;
    const held = run?.held ? this.store.heldStandby() : null;
    if (run && held && envs[standby].role === 'candidate' && held.instances.some((i) => this.healthy(i.id))) {
      // Promise 2 while a deploy runs: the standby held beside the candidate is healthy. The deploy
      // gives it back (abort: candidate stopped, standby restored), then the failover takes it.
      this.recordQuietly({ type: 'live.down', deployment: run.record.id, actor: SYSTEM_ACTOR, color: live, version: envs[live].version, reason: `every instance of live ${live} (${envs[live].version}) is down (${reason ?? 'health check'}); the deployment of ${run.record.version} is aborted so that the standby ${standby} (${held.env.version}) can take the traffic` });
      run.abort.abort(new CutoverError('CUTOVER_ERR_ABORTED', `every live instance of ${live} is down: the standby is needed for a failover`));
      void run.done.finally(() => { if (!this.closed) this.onHealthChange(id, false, reason); });
      return;
    }
    if (envs[standby].role !== 'standby' || this.healthyCount(standby) === 0) {
      this.recordQuietly({ type: 'live.down', actor: SYSTEM_ACTOR, color: live, version: envs[live].version, reason: `every instance of live ${live} (${envs[live].version}) is down (${reason ?? 'health check'}) and there is no healthy standby; requests get 503 until one recovers` });
      return;
    }
    void this.switchTo(standby, { actor: SYSTEM_ACTOR, reason: `failover: every live instance of ${live} is down (${reason ?? 'health check'})`, deployment: this.running?.record.id ?? null, requireGates: false, forced: false, type: 'failover' })
      .then(() => this.running?.abort.abort(new CutoverError('CUTOVER_ERR_ABORTED', 'failover to the standby')))
      .catch((err: unknown) => {
        this.log.error({ err }, 'failover failed');
        // E.g. the state cannot be written (write-ahead: no persisted decision, no swap). Try again
        // while the live colour is still down; onHealthChange re-checks everything.
        if (!this.closed) setTimeout(() => this.onHealthChange(id, false, reason), FAILOVER_RETRY_MS).unref();
      });
  }

  // ───────────────────────────── retirement ─────────────────────────────

  private scheduleRetirement(): void {
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = null;
    if (this.closed) return;
    const envs = this.store.environments();
    const standby = COLORS.find((c) => envs[c].role === 'standby' && envs[c].retireAt !== null);
    if (!standby) return;
    const delay = Math.max(0, (envs[standby].retireAt ?? 0) - Date.now());
    // setTimeout caps at 2^31-1 ms (~24.8 days); re-check then.
    this.retireTimer = setTimeout(() => {
      this.retire(standby, SYSTEM_ACTOR, 'standby.keepFor elapsed').catch((err: unknown) => {
        this.log.error({ err, color: standby }, 'retirement failed; trying again later');
        if (!this.closed) { this.retireTimer = setTimeout(() => this.scheduleRetirement(), RETIRE_RETRY_MS); this.retireTimer.unref(); }
      });
    }, Math.min(delay, 2 ** 31 - 1));
    this.retireTimer.unref();
  }

  /**
   * `cutover retire`: retire the warm standby now instead of after `standby.keepFor` (pending
   * contract migrations it holds back become eligible). Refused while the new release is judged.
   */
  async retireStandby(o: { actor: string; reason: string }): Promise<{ color: Color; version: string | null }> {
    const envs = this.store.environments();
    const color = COLORS.find((c) => envs[c].role === 'standby');
    if (!color) {
      const retired = COLORS.find((c) => envs[c].role === 'retired');
      throw new CutoverError('CUTOVER_ERR_INVALID_STATE', retired ? `there is no warm standby to retire (${retired} ${envs[retired].version ?? ''} is retired already)` : 'there is no standby to retire');
    }
    const run = this.running;
    if (run && run.record.color !== color && JUDGING_PHASES.includes(run.record.phase)) {
      throw new CutoverError('CUTOVER_ERR_CONFLICT', `deployment ${run.record.id} of ${run.record.version} is in ${run.record.phase}: its rollback target ${color} (${envs[color].version}) stays until it is judged`, { details: { deployment: run.record.id, phase: run.record.phase } });
    }
    const done = await this.retire(color, o.actor, o.reason);
    if (!done) throw new CutoverError('CUTOVER_ERR_CONFLICT', `${color} could not be retired now (a deployment is being judged); try again after it`);
    return done;
  }

  /** Stop the standby; its release is remembered so a later rollback can start it again. */
  async retire(color: Color, actor: string, reason: string): Promise<{ color: Color; version: string | null } | null> {
    await this.waitForDrain(color, null, 'before it is retired');
    const retired = await this.traffic.run(async () => {
      const env = this.store.environments()[color];
      if (env.role !== 'standby') return null;
      if (this.running && this.running.record.color !== color && JUDGING_PHASES.includes(this.running.record.phase)) {
        // Never retire the rollback target while the new release is still being judged.
        this.commit({ environments: [{ ...env, retireAt: Date.now() + 60_000 }] });
        this.scheduleRetirement();
        return null;
      }
      const t0 = performance.now();
      this.provider.setAutoRestart(color, false);
      await this.provider.stop(color);
      crashPoint('retirement', env.version); // test-only: stopped, not yet recorded
      this.forgetInstances(color, this.store.instances(color));
      this.commit({ environments: [{ ...env, role: 'retired', since: Date.now(), retireAt: null }], instances: [{ color, instances: [] }] });
      await this.applyRoutes('standby retired');
      this.record({ type: 'retire', actor, color, version: env.version, durationMs: performance.now() - t0, reason: `${color} (${env.version}) retired: ${reason}; rollback now needs a restart` });
      return { color, version: env.version };
    });
    // Outside the traffic lock: a long contract migration must never delay a rollback.
    if (retired && this.hooks.retired) await this.hooks.retired(retired);
    return retired;
  }

  // ───────────────────────────── routes ─────────────────────────────

  private healthyCount(color: Color): number {
    return this.provider.instances(color).filter((i) => this.healthy(i.id)).length;
  }

  /**
   * Healthy by the checks and reachable at all: an instance whose agent is gone (fleet agents)
   * counts as down at once, whatever a check of its address said last.
   */
  private healthy(id: string): boolean {
    return this.health.isHealthy(id) && (this.provider.reachable?.(id) ?? true);
  }

  /**
   * The instances a colour's route lists: all of them, less those nothing can reach (a gone
   * agent's) — unless that leaves none, then all (the rule of an all-unhealthy colour: the routers
   * answer 503 and a failover decides, never an empty target list for a colour that has instances).
   */
  private routable(color: Color): Instance[] {
    const all = this.provider.instances(color);
    if (!this.provider.reachable) return all;
    const up = all.filter((i) => this.provider.reachable?.(i.id) ?? true);
    return up.length > 0 ? up : all;
  }

  private buildTable(instancesOf: (c: Color) => Instance[], revision: number): RouteTable {
    return deriveRouteTable(this.store.environments(), instancesOf, revision, { split: this.split, mirror: this.mirror });
  }

  // ───────────────────────────── gradual switch and mirroring ─────────────────────────────

  /**
   * Mirror live requests to the candidate (and to live a second time) while a gate needs it; null
   * stops. Not a traffic move: live answers are never changed. Resolves once the router has it.
   */
  setMirror(spec: MirrorSpec | null): Promise<void> {
    return this.traffic.run(() => {
      this.mirror = spec;
      this.applyRoutes(spec === null ? 'mirroring stopped' : `mirroring ${Math.round(spec.sample * 1000) / 10}% of live requests`);
    });
  }

  /** One swap moving `share` of live traffic to the split colour (null: 0 %, back to the live colour alone). */
  private async setSplit(next: { color: Color; share: number; stickiness: Stickiness } | null, o: { deployment: string; actor: string; reason: string; type?: string; step?: number; of?: number }): Promise<number> {
    const t0 = performance.now();
    await this.traffic.run(async () => {
      if (next !== null && this.healthyCount(next.color) === 0) {
        throw new CutoverError('CUTOVER_ERR_NO_HEALTHY_INSTANCE', `${next.color} has no healthy instance; the gradual switch stops`, { details: { color: next.color } });
      }
      const prev = this.split;
      if (next === null && prev === null) return; // already at 0 % (a rollback and a failing step may race)
      this.split = next;
      const cur = this.router.table();
      const { drain } = await this.router.swap(this.buildTable((c) => this.routable(c), ++this.revision));
      if (drain && prev) this.watchDrain(drain, prev.color, o.deployment);
      const share = next?.share ?? 0;
      const color = next?.color ?? prev?.color ?? null;
      this.record({
        type: o.type ?? 'switch.step', deployment: o.deployment, phase: 'switch', actor: o.actor, color, durationMs: performance.now() - t0,
        reason: next === null
          ? `${o.reason}: ${prev ? `${prev.color} back to 0 % of live traffic at once` : 'no gradual switch in force'}`
          : `${o.reason}: ${Math.round(share * 1000) / 10} % of live traffic → ${next.color}${o.step ? ` (step ${o.step}/${o.of})` : ''}, sticky by ${next.stickiness.kind === 'none' ? 'nothing (per request)' : `${next.stickiness.kind} ${next.stickiness.name}`}`,
        data: { share, step: o.step ?? null, of: o.of ?? null, revision: this.revision, fromRevision: cur.revision, stickiness: next?.stickiness ?? prev?.stickiness ?? null },
      });
    });
    return performance.now() - t0;
  }

  /**
   * The steps of a gradual switch: each share for stepDuration, judged by the `step` hook (analysis)
   * when there is one. A failed step, an abort or a rollback returns the share to 0 % at once.
   */
  private async stepTraffic(run: RunningDeployment, ctx: PhaseContext, g: GradualSwitch): Promise<void> {
    const d = run.record;
    const of = g.steps.length + 1;
    try {
      for (let i = 0; i < g.steps.length; i++) {
        if (run.abort.signal.aborted) throw run.abort.signal.reason;
        const share = g.steps[i];
        await this.setSplit({ color: d.color, share, stickiness: g.stickiness }, { deployment: d.id, actor: d.actor, reason: `gradual switch of ${d.version}`, step: i + 1, of });
        const startedAt = Date.now();
        const step = { index: i + 1, of, share, startedAt, durationMs: g.stepDurationMs };
        const v: PhaseVerdict = this.hooks.step
          ? await this.hooks.step(ctx, step)
          : await sleep(g.stepDurationMs, undefined, { signal: run.abort.signal }).then(() => ({ outcome: 'passed' as const, summary: 'not judged (no analysis configured)' }));
        if (run.abort.signal.aborted) throw run.abort.signal.reason;
        this.record({ type: 'switch.step.verdict', deployment: d.id, phase: 'switch', actor: SYSTEM_ACTOR, color: d.color, version: d.version, reason: `step ${i + 1}/${of} at ${Math.round(share * 1000) / 10} %: ${v.summary}`, data: { outcome: v.outcome, share, step: i + 1, of, ...(v.data ?? {}) } });
        if (v.outcome === 'failed') {
          throw new CutoverError('CUTOVER_ERR_ANALYSIS_FAILED', `step ${i + 1}/${of} at ${Math.round(share * 1000) / 10} % failed: ${v.summary}`, { details: { step: i + 1, share, ...(v.data ?? {}) } });
        }
      }
    } catch (err) {
      // 0 % at once, before anything else is recorded or stopped.
      if (this.split !== null) await this.setSplit(null, { deployment: d.id, actor: SYSTEM_ACTOR, reason: `gradual switch of ${d.version} stopped (${toCutoverError(err, 'switch').message})` });
      throw err;
    }
  }

  /**
   * Re-derive the table from state (instances moved, candidate added or removed); swap when it
   * differs, and wait (outside the lock) until the routers applied it: the gates that follow a
   * new candidate must reach it on the preview listener, not whatever was there before.
   */
  private async updateRoutes(why: string): Promise<void> {
    const applied = await this.traffic.run(() => this.applyRoutes(why));
    const ack = applied ? await applied : null;
    if (ack && ack.missing.length > 0) this.log.warn({ revision: ack.revision, missing: ack.missing, why }, 'route update not acknowledged by every router');
  }

  /** Only call while holding the traffic mutex. */
  private async applyRoutes(why: string): Promise<Promise<ApplyReport> | null> {
    const next = this.buildTable((c) => this.routable(c), this.revision + 1);
    const cur = this.router.table();
    if (sameRoutes(next, cur)) return null;
    this.revision = next.revision;
    const { drain, applied } = await this.router.swap(next);
    if (drain && cur.live) this.watchDrain(drain, cur.live.color, null);
    this.log.debug({ revision: next.revision, why }, 'routes updated');
    return applied;
  }

  // ───────────────────────────── events and shutdown ─────────────────────────────

  record(e: EventInput): void {
    this.commit({ events: [e] });
  }

  /**
   * For events raised by the world (exits, restarts, drains) rather than by a call: if the state
   * database refuses the write (read-only, full disk), log it and go on; a throw here would escape
   * an event handler and take the daemon, and with it the router, down.
   */
  private recordQuietly(e: EventInput): void {
    try {
      this.record(e);
    } catch (err) {
      this.log.error({ err, event: e.type, reason: e.reason }, 'event not recorded: the state database refused the write');
    }
  }

  /** A commit off the pipeline's path (it must not reject a promise nobody awaits yet): a failure is logged. */
  private commitQuietly(change: Parameters<Store['commit']>[0]): void {
    try {
      this.commit(change);
    } catch (err) {
      this.log.error({ err }, 'state not recorded: the state database refused the write');
    }
  }

  private commit(change: Parameters<Store['commit']>[0]): void {
    const stored = this.store.commit(change);
    for (const ev of stored) {
      this.log.info({ event: ev.type, deployment: ev.deployment ?? undefined, color: ev.color ?? undefined, version: ev.version ?? undefined, phase: ev.phase ?? undefined, durationMs: ev.durationMs ?? undefined, actor: ev.actor }, ev.reason);
      this.emit('event', ev);
    }
  }

  /** Stop timers and the running deployment; instances are left to the caller (stop or detach). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retireTimer) clearTimeout(this.retireTimer);
    const run = this.running;
    if (run) {
      run.abort.abort(new CutoverError('CUTOVER_ERR_ABORTED', 'the daemon is shutting down'));
      await run.done.catch(() => undefined);
    }
  }
}

/** "acknowledged by 3/3 router(s) in 4ms", or "acknowledged by 2/3 router(s); missing: r3". */
export function ackSummary(ack: ApplyReport): string {
  const n = ack.acknowledged.length + ack.missing.length;
  return ack.missing.length === 0
    ? `acknowledged by ${n}/${n} router(s) in ${formatDuration(ack.ms ?? 0)}`
    : `acknowledged by ${ack.acknowledged.length}/${n} router(s); missing: ${ack.missing.join(', ')}`;
}

function skipped(summary: string): Promise<PhaseVerdict> {
  return Promise.resolve({ outcome: 'skipped', summary });
}

function toCutoverError(err: unknown, phase: string): CutoverError {
  if (isCutoverError(err)) return err;
  if (err instanceof Error && err.name === 'AbortError') return new CutoverError('CUTOVER_ERR_ABORTED', `aborted during ${phase}`, { cause: err });
  return new CutoverError('CUTOVER_ERR_INTERNAL', `${phase}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

function newDeploymentId(now: number): string {
  const t = new Date(now).toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return `d-${t}-${randomBytes(3).toString('hex')}`;
}

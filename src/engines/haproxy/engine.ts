/**
 * `router.engine: haproxy`: HAProxy carries the traffic; Cutover writes its configuration,
 * runs it (HAProxySupervisor) and from then on changes routing through the runtime API only —
 * a switch, a rollback or an instance change never reloads HAProxy.
 *
 * - switch / rollback: `set map routes.map live live_green` — one atomic map update, applied to
 *   the next request of every connection; requests in flight finish on their backend (promise 1).
 * - instances: `add server` (enters in maintenance, then `set server … state ready` when healthy),
 *   `set server … addr` when a known instance moved, `del server` once it has no connection left.
 * - health: Cutover's health checker decides who is in rotation; its verdicts are mirrored with
 *   `set server … state ready|maint`. In the live backends HAProxy also ejects a server on a
 *   connection error (passive ejection) and falls back to the standby's servers (`backup`; only a
 *   release that has been live) until the controller fails over.
 * - drain: the old live backend's current sessions (`show stat` scur) are watched until 0; at
 *   `drainTimeout`, `shutdown sessions server` closes what remains.
 * - stats: counts per listener and colour from HAProxy's own counters (`show stat` hrsp_*, polled
 *   every second: no per-request work); latencies and error kinds from the request log ring, where
 *   answers below 500 are logged 1 in N (`router.haproxy.logSample`, `auto`: N follows the rate)
 *   and every error always; every request while a judge holds `everyRequest` (analysis).
 * - files: config, map and server-state file always mirror the current table, so a reload or a
 *   restart (HAProxy killed: the supervisor's `exit` → start again) serves the same live colour.
 *
 * Owns: the mapping from route tables to HAProxy state. Must never: reload HAProxy to move
 * traffic, or choose a colour itself (the controller does).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventEmitter } from 'node:events';
import type { Color } from '../../environments/types.ts';
import type { HealthView } from '../../health/types.ts';
import type { ApplyReport, DataPlane, DrainReport, SwapResult } from '../../router/data-plane.ts';
import { RequestStats, type ListenerName } from '../../router/request-stats.ts';
import { EMPTY_ROUTE_TABLE, freezeTable, type ColorRoute, type RouteTable, type RouteTarget } from '../../router/route-table.ts';
import type { RequestRecord } from '../../router/data-plane.ts';
import { silentLogger, type Logger } from '../../lib/logger.ts';
import { readFileSync } from 'node:fs';
import { BACKENDS, DYNAMIC_SERVER_OPTIONS, EVERY_REQUEST, SAMPLE_KEY, backendOf, isLiveBackend, serverOptions, noHealthyErrorFile, renderConfig, renderMap, serverArgs, type BackendName, type HAProxyFiles, type HAProxySettings, type SampleRates } from './config.ts';
import { RequestLogReader, type LoggedRequest } from './request-log.ts';
import { num, parseStatCsv, runtimeErrors, type StatRow } from './runtime.ts';
import { BACKEND_LANES as BACKEND_LANE } from './request-log.ts';
import { HAProxySupervisor } from './supervisor.ts';
import { CutoverError } from '../../lib/errors.ts';

/** How often HAProxy's counters are read for counts and in-flight figures (faster while a drain runs). */
export const STATS_POLL_MS = 1_000;
/**
 * `logSample: auto`: about this many latency lines a second per listener (N = rate / this). More
 * would only refine the histogram: RequestStats keeps 200 raw samples a second.
 */
export const AUTO_SAMPLE_LINES_PER_S = 100;
/** `auto` changes N only when the rate moved it by more than this factor (no map churn). */
const AUTO_SAMPLE_HYSTERESIS = 1.5;
/**
 * `auto`: a surge (this many times the wanted lines since the last reading) reads the counters at
 * once instead of at the next poll, at most every AUTO_SURGE_MIN_MS: a jump from idle to full
 * load is sampled within about 100 ms, not logged line by line for up to a second.
 */
const AUTO_SURGE_FACTOR = 4;
const AUTO_SURGE_MIN_MS = 100;
const MAX_SAMPLE = 100_000;
/** Releases remembered as having been live (the standby is one of them). */
const LIVE_RELEASES_KEPT = 16;
export const DRAIN_POLL_MS = 50;
/** Retry interval for `del server` of a removed instance that still has connections. */
const DELETE_RETRY_MS = 250;
/** Restart backoff after HAProxy died: 100 ms doubling to 5 s. */
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5_000;

/** This data plane's name in acknowledgements (`SwapResult.applied`). */
export const HAPROXY_ROUTER_ID = 'haproxy';

export interface EngineEvent { type: string; reason: string; data?: Record<string, unknown> }

export interface HAProxyEngineOptions {
  stateDir: string;
  binary: string;
  settings: HAProxySettings;
  drainTimeoutMs: number;
  health: HealthView & Partial<Pick<EventEmitter, 'on' | 'off'>>;
  tls?: { cert: string; key: string } | null;
  /** false: attach to an HAProxy run by something else through `socket`; never start, reload or stop it. */
  manage?: boolean;
  socket?: string;
  logger?: Logger;
  onRequest?: (r: RequestRecord) => void;
}

export function haproxyFiles(stateDir: string, o: { socket?: string; tls: boolean }): HAProxyFiles {
  const dir = path.join(stateDir, 'haproxy');
  return {
    dir,
    config: path.join(dir, 'haproxy.cfg'),
    map: path.join(dir, 'routes.map'),
    stateFile: path.join(dir, 'servers.state'),
    socket: o.socket ?? path.join(dir, 'admin.sock'),
    masterSocket: path.join(dir, 'master.sock'),
    pidFile: path.join(dir, 'haproxy.pid'),
    tlsPem: o.tls ? path.join(dir, 'live.pem') : null,
  };
}

interface PendingDrain {
  color: Color;
  revision: number;
  startedAt: number;
  resolve: (r: DrainReport) => void;
  cancelled: boolean;
}

export class HAProxyEngine implements DataPlane {
  readonly stats = new RequestStats();
  /** The service this data plane serves (ServiceRouter.name; set by the daemon). */
  name = 'app';
  readonly files: HAProxyFiles;
  readonly supervisor: HAProxySupervisor;
  readonly #o: HAProxyEngineOptions;
  readonly #logger: Logger;
  readonly #manage: boolean;
  readonly #reader: RequestLogReader;
  #table: RouteTable = EMPTY_ROUTE_TABLE;
  /** Servers HAProxy has now, per backend: id → "host:port". */
  readonly #servers = new Map<BackendName, Map<string, string>>(BACKENDS.map((b) => [b, new Map()]));
  /** Revision HAProxy has applied (every runtime command of that swap answered without error). */
  #applied = 0;
  #appliedWaiters: { revision: number; resolve: () => void }[] = [];
  /** Runtime API work, one at a time, in swap order. */
  #queue: Promise<void> = Promise.resolve();
  #scur = new Map<string, number>();
  /** Last `show stat` response counters per backend ([2xx incl. 1xx, 3xx, 4xx, 5xx incl. other]). */
  #counters = new Map<string, number[]>();
  #countersAt = 0;
  /** 1-in-N sampling HAProxy runs now, and what `logSample` asks for when nobody holds everyRequest. */
  #sample: SampleRates = EVERY_REQUEST;
  #wantedSample: SampleRates = EVERY_REQUEST;
  /** Holders of everyRequest(). */
  #everyHolders = 0;
  /** `colour:version` pairs that have been live: a preview route among them is the standby (validated), not a candidate. */
  readonly #wasLive = new Set<string>();
  /** Requests the standby's servers (backups) had answered in each live backend at the last reading. */
  #backupServed = new Map<string, number>();
  #backupEpisode = false;
  /** Lines read since the last counter reading (`auto`: a surge triggers an early reading). */
  #linesSinceRead = 0;
  #reading = false;
  #poll: NodeJS.Timeout | null = null;
  #drains: PendingDrain[] = [];
  #closed = false;
  #started = false;
  #restartDelay = RESTART_MIN_MS;
  #onHealth = (id: string, healthy: boolean) => this.#mirrorHealth(id, healthy);
  /** Where engine events go (the daemon records them); set after construction. */
  onEvent: (e: EngineEvent) => void = () => {};

  constructor(o: HAProxyEngineOptions) {
    this.#o = o;
    this.#manage = o.manage ?? true;
    this.#logger = (o.logger ?? silentLogger).child({ component: 'haproxy' });
    this.files = haproxyFiles(o.stateDir, { socket: o.socket, tls: Boolean(o.tls) });
    this.supervisor = new HAProxySupervisor({ binary: o.binary, files: this.files, logger: this.#logger });
    this.supervisor.on('exit', (pid: number, reason: string) => void this.#restart(pid, reason));
    this.#reader = new RequestLogReader(this.files.socket, (r) => this.#record(r));
    const fixed = o.settings.logSample;
    // auto starts at 1 (every request) and follows the rate from the first counter reading.
    this.#wantedSample = fixed === 'auto' ? EVERY_REQUEST : { live: fixed, preview: fixed };
    this.#sample = this.#wantedSample;
  }

  /** The 1-in-N sampling of answers below 500 HAProxy logs under now (per listener). */
  sampleRates(): SampleRates {
    return this.#sample;
  }

  /**
   * Every request is logged (and reaches the request hook with weight 1) from when this resolves
   * until the release is called; holders nest.
   */
  async everyRequest(): Promise<() => void> {
    this.#everyHolders++;
    if (this.#everyHolders === 1) await this.#setSample(EVERY_REQUEST);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#everyHolders--;
      if (this.#everyHolders === 0) void this.#setSample(this.#wantedSample);
    };
  }

  table(): RouteTable {
    return this.#table;
  }

  /** The revision HAProxy runs now. */
  appliedRevision(): number {
    return this.#applied;
  }

  /** Resolves when HAProxy has applied `revision` (or a later one). */
  applied(revision: number): Promise<void> {
    if (this.#applied >= revision) return Promise.resolve();
    return new Promise((resolve) => this.#appliedWaiters.push({ revision, resolve }));
  }

  addresses(): { live: { host: string; port: number }; preview: { host: string; port: number } | null } {
    return { live: this.#o.settings.listen, preview: this.#o.settings.preview };
  }

  /** Writes the files for the current table and starts (or attaches to) HAProxy. */
  async start(): Promise<void> {
    mkdirSync(this.files.dir, { recursive: true, mode: 0o700 });
    this.#readLiveReleases();
    this.#writeLiveReleases();
    for (const c of ['blue', 'green'] as const) writeAtomic(path.join(this.files.dir, `503-${c}.http`), noHealthyErrorFile(c));
    this.#writeTls();
    this.#writeFiles(this.#table);
    if (this.#manage) {
      const how = await this.supervisor.start();
      if (how === 'attached') this.onEvent({ type: 'haproxy.attached', reason: `attached to the running HAProxy (pid ${this.supervisor.masterPid}) and reloaded it with the current route table` });
    } else if (!(await this.supervisor.api.alive(2_000))) {
      throw new CutoverError('CUTOVER_ERR_CONFIG', `router.haproxy.manage is false but no HAProxy answers on its admin socket ${this.files.socket} (router.haproxy.socket)`, { details: { field: 'router.haproxy.socket' } });
    }
    await this.#adoptRunning();
    await this.#reader.open();
    // Counts start from what this HAProxy has counted so far (an attached one counted before us).
    await this.#readCounters(false);
    this.#started = true;
    this.#poll = setInterval(() => void this.#pollStats(), STATS_POLL_MS);
    this.#poll.unref();
    this.#o.health.on?.('change', this.#onHealth);
    this.#logger.info({ listen: this.#o.settings.listen, preview: this.#o.settings.preview, pid: this.supervisor.masterPid }, 'HAProxy engine serving');
  }

  /**
   * Moves traffic to `next`: the files first (so any reload from now on serves it), then the
   * runtime API (queued, in order). Returns at once; `applied(revision)` resolves when HAProxy
   * has it, and `drain` when the colour that left the live listener has drained.
   */
  swap(next: RouteTable): SwapResult {
    const table = Object.isFrozen(next) ? next : freezeTable(next);
    const prev = this.#table;
    this.#table = table;
    this.#rememberLive(table);
    const from = prev.live?.color ?? null;
    const to = table.live?.color ?? null;
    if (to !== null) for (const d of this.#drains) if (d.color === to) d.cancelled = true;
    // Before start() the table is only remembered: start writes the files and applies it.
    if (!this.#started) return { revision: table.revision, drain: null, applied: this.#applyReport(table.revision) };
    this.#writeFiles(table);
    const apply = this.#enqueue(() => this.#apply(table));
    // Settle waiters of this revision even when the runtime API failed (HAProxy restarting: the
    // restart applies the files, which already hold this table); the failure is logged.
    void apply.then(() => this.#settle(table.revision));
    let drain: Promise<DrainReport> | null = null;
    if (from !== null && from !== to) {
      drain = new Promise<DrainReport>((resolve) => {
        const d: PendingDrain = { color: from, revision: table.revision, startedAt: performance.now(), resolve, cancelled: false };
        this.#drains.push(d);
        void apply.then(() => this.#watchDrain(d));
      });
    }
    this.#logger.info({ revision: table.revision, live: table.live && { color: table.live.color, version: table.live.version }, preview: table.preview && { color: table.preview.color, version: table.preview.version } }, 'route table swapped');
    return { revision: table.revision, drain, applied: this.#applyReport(table.revision) };
  }

  /** `applied` of a swap: HAProxy acknowledged when its runtime API took every command of the revision. */
  #applyReport(revision: number): Promise<ApplyReport> {
    return this.applied(revision).then(() => (this.#applied >= revision
      ? { revision, acknowledged: [HAPROXY_ROUTER_ID], missing: [] }
      : { revision, acknowledged: [], missing: [HAPROXY_ROUTER_ID] }));
  }

  /** Requests (and WebSockets) in flight on a listener, as HAProxy counted them at its last poll. */
  inFlight(listener: ListenerName, color?: Color): number {
    if (color !== undefined) return this.#scur.get(`${listener}_${color}`) ?? 0;
    return (this.#scur.get(`${listener}_blue`) ?? 0) + (this.#scur.get(`${listener}_green`) ?? 0);
  }

  rejections(): Record<string, number> {
    return {};
  }

  /** HAProxy does not mirror requests for Cutover (the config refuses a mirror gate with this engine). */
  mirrorReport(): null {
    return null;
  }

  /** New certificate for the live listener: rewrite the PEM, reload HAProxy (listeners handed over). */
  reloadTls(): boolean {
    if (!this.#o.tls || !this.#manage) return false;
    this.#writeTls();
    void this.#enqueue(async () => {
      await this.supervisor.reload();
      this.#zeroCounters();
      await this.#reader.reopen();
    });
    return true;
  }

  /** Reloads HAProxy with the current files (for settings the runtime API cannot change). */
  reload(): Promise<void> {
    return this.#enqueue(async () => {
      await this.#saveServerState();
      await this.supervisor.reload();
      this.#zeroCounters();
      await this.#reader.reopen();
    });
  }

  /**
   * Stops HAProxy (`keepRunning`: leave it serving for the next daemon, which attaches to it).
   * Pending drains resolve as not completed.
   */
  async close(opts: { keepRunning?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.health.off?.('change', this.#onHealth);
    if (this.#poll) clearInterval(this.#poll);
    this.#reader.close();
    await this.#queue.catch(() => {});
    for (const d of this.#drains) d.resolve({ color: d.color, revision: d.revision, durationMs: performance.now() - d.startedAt, completed: false, closedRequests: 0, closedWebSockets: 0 });
    this.#drains = [];
    await this.#saveServerState().catch(() => {});
    if (!this.#manage) return;
    if (opts.keepRunning) this.supervisor.detach();
    else await this.supervisor.stop();
    this.#logger.info({ keepRunning: Boolean(opts.keepRunning) }, 'HAProxy engine closed');
  }

  // ── internals ──

  #enqueue(work: () => Promise<void>): Promise<void> {
    const p = this.#queue.then(work);
    this.#queue = p.catch((err: Error) => {
      this.#logger.error({ err: err.message }, 'HAProxy runtime API call failed');
    });
    return this.#queue;
  }

  #targets(table: RouteTable): Record<Color, readonly RouteTarget[]> {
    const out: Record<Color, readonly RouteTarget[]> = { blue: [], green: [] };
    for (const r of [table.live, table.preview] as (ColorRoute | null)[]) if (r !== null) out[r.color] = r.targets;
    return out;
  }

  /** Releases that were live, kept in `<dir>/live-releases` so a restarted daemon still knows its standby. */
  #rememberLive(table: RouteTable): void {
    if (table.live === null) return;
    const key = `${table.live.color}:${table.live.version}`;
    if (this.#wasLive.has(key)) return;
    this.#wasLive.add(key);
    // Bounded: the last few releases are all a standby can be.
    while (this.#wasLive.size > LIVE_RELEASES_KEPT) this.#wasLive.delete(this.#wasLive.values().next().value!);
    if (this.#started) this.#writeLiveReleases();
  }

  #writeLiveReleases(): void {
    writeAtomic(path.join(this.files.dir, 'live-releases'), `${[...this.#wasLive].join('\n')}\n`, 0o600);
  }

  #readLiveReleases(): void {
    let text = '';
    try { text = readFileSync(path.join(this.files.dir, 'live-releases'), 'utf8'); } catch { return; }
    const known = [...text.split('\n').filter((l) => /^(blue|green):/.test(l)), ...this.#wasLive];
    this.#wasLive.clear();
    for (const k of known.slice(-LIVE_RELEASES_KEPT)) this.#wasLive.add(k);
  }

  /**
   * The servers each live backend falls back to: the other colour's, when it is the standby (a
   * release that has been live: validated), never a candidate's (DESIGN promise 4).
   */
  #backups(table: RouteTable): Record<Color, readonly RouteTarget[]> {
    const out: Record<Color, readonly RouteTarget[]> = { blue: [], green: [] };
    for (const r of [table.live, table.preview] as (ColorRoute | null)[]) {
      if (r === null || !this.#wasLive.has(`${r.color}:${r.version}`)) continue;
      out[r.color === 'blue' ? 'green' : 'blue'] = r.targets;
    }
    return out;
  }

  #writeFiles(table: RouteTable): void {
    const targets = this.#targets(table);
    const down = new Set<string>();
    for (const c of ['blue', 'green'] as const) for (const t of targets[c]) if (!this.#o.health.isHealthy(t.id)) down.add(t.id);
    writeAtomic(this.files.config, renderConfig(this.files, this.#o.settings, targets, down, this.#backups(table)));
    writeAtomic(this.files.map, renderMap(table, this.#sample));
  }

  #writeTls(): void {
    if (!this.#o.tls || this.files.tlsPem === null) return;
    const pem = `${readFileSync(this.#o.tls.cert, 'utf8').trim()}\n${readFileSync(this.#o.tls.key, 'utf8').trim()}\n`;
    writeAtomic(this.files.tlsPem, pem, 0o600);
  }

  /** Learns which servers the running HAProxy has (after a start, an attach or a restart). */
  async #adoptRunning(): Promise<void> {
    const rows = await this.supervisor.api.stat();
    for (const b of BACKENDS) this.#servers.get(b)!.clear();
    for (const r of rows) {
      const m = this.#servers.get(r.pxname as BackendName);
      if (m === undefined || r.svname === 'BACKEND' || r.svname === 'FRONTEND') continue;
      m.set(r.svname, r.addr ?? '');
    }
    // An HAProxy started from an older map (manage: false) lacks the sampling keys: `set map`
    // only changes existing entries.
    const entries = await this.supervisor.api.exec(`show map ${this.files.map}`);
    const missing = [SAMPLE_KEY.live, SAMPLE_KEY.preview].filter((k) => !new RegExp(` ${k} `).test(entries));
    if (missing.length > 0) await this.supervisor.api.batch(missing.map((k) => `add map ${this.files.map} ${k} 1`));
    // A start from the files has what the table says; an attach gets the table applied now.
    await this.#apply(this.#table);
  }

  /** Brings HAProxy to `table` through the runtime API: servers first, then the map (the switch). */
  async #apply(table: RouteTable): Promise<void> {
    if (this.#closed) return;
    const targets = this.#targets(table);
    const backups = this.#backups(table);
    const cmds: string[] = [];
    // Backup servers are not needed for the switch: their commands go after the map.
    const after: string[] = [];
    const removals: [BackendName, string][] = [];
    for (const b of BACKENDS) {
      const color: Color = b.endsWith('blue') ? 'blue' : 'green';
      const have = this.#servers.get(b)!;
      const want = new Map(targets[color].map((t) => [t.id, { t, backup: false }]));
      if (isLiveBackend(b)) for (const t of backups[color]) want.set(t.id, { t, backup: true });
      for (const [id, { t, backup }] of want) {
        const a = serverArgs(t.host, t.port);
        const state = this.#o.health.isHealthy(id) ? 'ready' : 'maint';
        const out = backup ? after : cmds;
        if (!have.has(id)) {
          out.push(`add server ${b}/${id} ${a} ${DYNAMIC_SERVER_OPTIONS}${serverOptions(b, backup)}`);
          out.push(`set server ${b}/${id} state ${state}`);
          // A dynamic server's check starts disabled (management.txt, "add server").
          if (isLiveBackend(b)) out.push(`enable health ${b}/${id}`);
        } else if (have.get(id) !== a) {
          out.push(`set server ${b}/${id} addr ${t.host} port ${t.port}`);
          out.push(`set server ${b}/${id} state ${state}`);
        }
        have.set(id, a);
      }
      for (const id of have.keys()) {
        if (want.has(id)) continue;
        if (isLiveBackend(b)) cmds.push(`disable health ${b}/${id}`);
        cmds.push(`set server ${b}/${id} state maint`);
        removals.push([b, id]);
        have.delete(id);
      }
    }
    cmds.push(`set map ${this.files.map} live ${backendOf('live', table.live)}`);
    cmds.push(`set map ${this.files.map} preview ${backendOf('preview', table.preview)}`);
    cmds.push(...this.#sampleCommands(this.#sample), ...after);
    const errors = runtimeErrors(await this.supervisor.api.batch(cmds));
    if (errors.length > 0) this.#logger.warn({ revision: table.revision, errors }, 'HAProxy refused part of a route change');
    this.#markApplied(table.revision);
    for (const [b, id] of removals) void this.#deleteWhenIdle(b, id);
    void this.#saveServerState().catch(() => {});
  }

  #markApplied(revision: number): void {
    if (revision > this.#applied) this.#applied = revision;
    this.#settle(this.#applied);
  }

  #settle(revision: number): void {
    const ready = this.#appliedWaiters.filter((w) => w.revision <= revision);
    this.#appliedWaiters = this.#appliedWaiters.filter((w) => w.revision > revision);
    for (const w of ready) w.resolve();
  }

  /** `del server` needs a server in maintenance with no connection left: retry until then. */
  async #deleteWhenIdle(b: BackendName, id: string): Promise<void> {
    const deadline = Date.now() + this.#o.drainTimeoutMs + 5_000;
    while (!this.#closed && Date.now() < deadline) {
      if (this.#servers.get(b)!.has(id)) return; // it came back meanwhile
      const out = await this.supervisor.api.exec(`del server ${b}/${id}`).catch(() => 'unreachable');
      if (/Server deleted|No such server/i.test(out)) return;
      await sleep(DELETE_RETRY_MS);
    }
  }

  #mirrorHealth(id: string, healthy: boolean): void {
    const cmds: string[] = [];
    for (const b of BACKENDS) if (this.#servers.get(b)!.has(id)) cmds.push(`set server ${b}/${id} state ${healthy ? 'ready' : 'maint'}`);
    if (cmds.length === 0) return;
    void this.#enqueue(async () => {
      const errors = runtimeErrors(await this.supervisor.api.batch(cmds));
      if (errors.length > 0) this.#logger.warn({ instance: id, errors }, 'HAProxy refused a server state change');
      await this.#saveServerState();
    });
  }

  async #watchDrain(d: PendingDrain): Promise<void> {
    const backend = `live_${d.color}`;
    const deadline = d.startedAt + this.#o.drainTimeoutMs;
    const finish = (r: Omit<DrainReport, 'color' | 'revision' | 'durationMs'>) => {
      this.#drains = this.#drains.filter((x) => x !== d);
      const report: DrainReport = { color: d.color, revision: d.revision, durationMs: performance.now() - d.startedAt, ...r };
      this.#logger.info({ ...report }, report.completed ? 'drain completed' : 'drain timed out; remaining connections closed');
      d.resolve(report);
    };
    while (!this.#closed) {
      if (d.cancelled) return finish({ completed: true, closedRequests: 0, closedWebSockets: 0 });
      const rows = await this.supervisor.api.stat().catch(() => null);
      const be = rows?.find((r) => r.pxname === backend && r.svname === 'BACKEND');
      const inFlight = be ? num(be, 'scur') : 0;
      if (rows !== null) this.#scur.set(backend, inFlight);
      if (rows !== null && inFlight === 0) return finish({ completed: true, closedRequests: 0, closedWebSockets: 0 });
      if (performance.now() >= deadline) {
        const servers = [...this.#servers.get(backend as BackendName)!.keys()];
        if (servers.length > 0) await this.supervisor.api.batch(servers.map((s) => `shutdown sessions server ${backend}/${s}`)).catch(() => '');
        return finish({ completed: false, closedRequests: inFlight, closedWebSockets: 0 });
      }
      await sleep(DRAIN_POLL_MS);
    }
  }

  async #pollStats(): Promise<void> {
    await this.#readCounters(true).catch(() => {});
  }

  /**
   * Reads the backends' counters: in-flight (scur) and, when `count`, the answers since the last
   * reading into the stats (HAProxy counts every answer, its own 502/503/504 included); then
   * `auto` sampling follows the rate.
   */
  async #readCounters(count: boolean): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    let rows: StatRow[];
    try {
      rows = parseStatCsv(await this.supervisor.api.exec('show stat -1 6 -1'));
    } finally {
      this.#reading = false;
    }
    this.#linesSinceRead = 0;
    const now = Date.now();
    const elapsedS = this.#countersAt > 0 ? (now - this.#countersAt) / 1000 : 0;
    this.#countersAt = now;
    const rate = { live: 0, preview: 0 };
    if (count) this.#noticeBackups(rows);
    for (const r of rows) {
      if (r.svname !== 'BACKEND') continue;
      this.#scur.set(r.pxname, num(r, 'scur'));
      const lane = BACKEND_LANE[r.pxname];
      if (lane === undefined) continue;
      const c = [num(r, 'hrsp_1xx') + num(r, 'hrsp_2xx'), num(r, 'hrsp_3xx'), num(r, 'hrsp_4xx'), num(r, 'hrsp_5xx') + num(r, 'hrsp_other')];
      const prev = this.#counters.get(r.pxname);
      this.#counters.set(r.pxname, c);
      if (!count || prev === undefined) continue;
      // A counter that went down belongs to a new HAProxy process (restart, reload): it counted from 0.
      const fresh = c.some((v, i) => v < prev[i]);
      const d = c.map((v, i) => (fresh ? v : v - prev[i])) as [number, number, number, number];
      const total = d[0] + d[1] + d[2] + d[3];
      if (total === 0) continue;
      this.stats.recordCounts(lane.listener, lane.color, d, now);
      rate[lane.listener] += total;
    }
    if (count && elapsedS > 0 && this.#o.settings.logSample === 'auto') this.#followRate(rate.live / elapsedS, rate.preview / elapsedS);
  }

  /**
   * Records when HAProxy sent live requests to the standby's servers (its `backup` servers: no
   * live instance answered a connection), once per episode: the controller's failover follows
   * when the health checker has seen the instances die (DESIGN promise 6).
   */
  #noticeBackups(rows: StatRow[]): void {
    const live = this.#table.live;
    const served = new Map<string, number>();
    for (const r of rows) if (r.svname !== 'BACKEND' && r.svname !== 'FRONTEND' && num(r, 'bck') === 1 && isLiveBackend(r.pxname as BackendName)) served.set(r.pxname, (served.get(r.pxname) ?? 0) + num(r, 'stot'));
    const prev = this.#backupServed;
    this.#backupServed = served;
    if (live === null) return;
    const b = `live_${live.color}`;
    const before = prev.get(b);
    const now = served.get(b) ?? 0;
    if (before === undefined || now <= before) {
      this.#backupEpisode = false;
      return;
    }
    if (this.#backupEpisode) return;
    this.#backupEpisode = true;
    const standby = live.color === 'blue' ? 'green' : 'blue';
    this.onEvent({
      type: 'haproxy.backup',
      reason: `HAProxy sent ${now - before} live request(s) to the standby's servers (${standby}): no instance of ${live.color} (${live.version}) took a connection; the controller fails over when the health checker has seen them down`,
      data: { live: live.color, standby, requests: now - before },
    });
  }

  /** A new HAProxy process counts from 0: the next reading counts all it has. */
  #zeroCounters(): void {
    for (const k of this.#counters.keys()) this.#counters.set(k, [0, 0, 0, 0]);
  }

  /** `auto`: N ≈ rate / AUTO_SAMPLE_LINES_PER_S per listener, changed only past the hysteresis. */
  #followRate(liveRps: number, previewRps: number): void {
    const pick = (rps: number, cur: number) => {
      const n = Math.min(MAX_SAMPLE, Math.max(1, Math.floor(rps / AUTO_SAMPLE_LINES_PER_S)));
      return n > cur * AUTO_SAMPLE_HYSTERESIS || n < cur / AUTO_SAMPLE_HYSTERESIS ? n : cur;
    };
    const next = { live: pick(liveRps, this.#wantedSample.live), preview: pick(previewRps, this.#wantedSample.preview) };
    if (next.live === this.#wantedSample.live && next.preview === this.#wantedSample.preview) return;
    this.#wantedSample = next;
    if (this.#everyHolders === 0) void this.#setSample(next);
  }

  #sampleCommands(rates: SampleRates): string[] {
    return [`set map ${this.files.map} ${SAMPLE_KEY.live} ${rates.live}`, `set map ${this.files.map} ${SAMPLE_KEY.preview} ${rates.preview}`];
  }

  /** Applies a sampling (map file first, so a reload or restart keeps it; then the runtime API). */
  #setSample(rates: SampleRates): Promise<void> {
    this.#sample = rates;
    if (!this.#started) return Promise.resolve();
    writeAtomic(this.files.map, renderMap(this.#table, rates));
    return this.#enqueue(async () => {
      const errors = runtimeErrors(await this.supervisor.api.batch(this.#sampleCommands(this.#sample)));
      if (errors.length > 0) this.#logger.warn({ errors }, 'HAProxy refused a log sampling change');
    });
  }

  async #saveServerState(): Promise<void> {
    const state = await this.supervisor.api.exec('show servers state');
    if (/^1\n/.test(state)) writeAtomic(this.files.stateFile, state);
  }

  #record(r: LoggedRequest): void {
    if (++this.#linesSinceRead > AUTO_SURGE_FACTOR * AUTO_SAMPLE_LINES_PER_S && this.#o.settings.logSample === 'auto' && this.#everyHolders === 0
      && !this.#reading && Date.now() - this.#countersAt >= AUTO_SURGE_MIN_MS) {
      void this.#readCounters(true).catch(() => {});
    }
    const route = this.#table.live?.color === r.color ? this.#table.live : this.#table.preview?.color === r.color ? this.#table.preview : null;
    // Counts come from HAProxy's counters, which count every answer; a request with no answer
    // (the client left first: 499) is only in the log, which never samples it.
    if (!r.answered) this.stats.recordCounts(r.listener, r.color, r.status >= 500 ? [0, 0, 0, 1] : [0, 0, 1, 0]);
    this.stats.recordLatency(r.listener, r.color, r.durationMs, r.error, r.weight);
    const hook = this.#o.onRequest;
    if (hook !== undefined) {
      const rec: RequestRecord = { listener: r.listener, color: r.color, version: route?.version ?? '', method: r.method, status: r.status, durationMs: r.durationMs };
      if (r.error !== undefined) rec.error = r.error;
      if (r.weight > 1) rec.weight = r.weight;
      hook(rec);
    }
  }

  /** HAProxy went away without `close()`: start it again from the files (the current table). */
  async #restart(pid: number, reason: string): Promise<void> {
    if (this.#closed || !this.#manage) return;
    this.#logger.error({ pid, reason }, 'HAProxy is gone; starting it again');
    const t0 = performance.now();
    for (;;) {
      if (this.#closed) return;
      try {
        this.#writeFiles(this.#table);
        await this.supervisor.start();
        this.#zeroCounters();
        await this.#adoptRunning();
        await this.#reader.reopen();
        this.#restartDelay = RESTART_MIN_MS;
        const live = this.#table.live;
        this.onEvent({
          type: 'haproxy.restarted',
          reason: `HAProxy (pid ${pid}) ${reason}; started again in ${Math.round(performance.now() - t0)} ms serving ${live ? `${live.color} (${live.version})` : 'no live release'}`,
          data: { pid, newPid: this.supervisor.masterPid, live: live?.color ?? null, revision: this.#table.revision },
        });
        return;
      } catch (err) {
        this.#logger.error({ err: (err as Error).message, retryInMs: this.#restartDelay }, 'HAProxy restart failed');
        await sleep(this.#restartDelay);
        this.#restartDelay = Math.min(RESTART_MAX_MS, this.#restartDelay * 2);
      }
    }
  }
}

function writeAtomic(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, file);
}

/**
 * `cutover up`: composes store, environments, health, router, controller and admin API into
 * one process. Start-up order is the point: the state-directory lock and the state checks come
 * first, then every listener is bound (the admin API answers "starting"), the router serves the
 * recorded live colour before anything else happens (DESIGN promise 5), then instances are
 * adopted, then the API serves. A failure anywhere before "up" undoes the start (issue #15).
 */
import type { LoadedConfig } from '../config/schema.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { ProcessProvider } from '../environments/process-provider.ts';
import { StaticProvider } from '../environments/static-provider.ts';
import type { EnvironmentProvider } from '../environments/types.ts';
import { HealthChecker } from '../health/health-checker.ts';
import { Router } from '../router/router.ts';
import type { DataPlane, DataPlaneEngine, RequestRecord, RouterView } from '../router/data-plane.ts';
import { Controller } from '../controller/controller.ts';
import { connectableHost, hostPort } from '../lib/address.ts';
import type { PipelineHooks } from '../plugin-api/hooks.ts';
import { AdminServer } from '../api/server.ts';
import type { ApiExtras, Plugin, PluginFactory } from '../plugin-api/plugin.ts';
import { ensureToken, tokenFile } from '../api/token.ts';
import { createLogger, type Logger } from '../lib/logger.ts';
import { configSecrets } from '../config/secrets.ts';
import { StateLock } from './state-lock.ts';
import { guardState, writeCurrentMarker } from './state-guard.ts';
import { Snapshotter } from '../store/snapshots.ts';
import { connectionBudget, raiseNofile, type ConnectionBudget } from './fd-limit.ts';

export interface DaemonOptions {
  logger?: Logger;
  /** Extra pipeline hooks (gates, analysis, migrations) built by the caller. */
  hooks?: PipelineHooks;
  extras?: ApiExtras;
  /** Called for every proxied request (metrics, analysis). */
  onRequest?: (r: RequestRecord) => void;
  env?: NodeJS.ProcessEnv;
  /** `cutover up --stop-unknown-instances`: start although processes of this state directory run that state.db does not account for (recovery stops them). */
  stopUnknownInstances?: boolean;
}

export class Daemon {
  readonly config: LoadedConfig;
  readonly store: SqliteStore;
  readonly provider: EnvironmentProvider;
  readonly health: HealthChecker;
  /** The data plane this daemon runs (the in-process Router); only the controller swaps it. */
  readonly router: DataPlaneEngine;
  readonly controller: Controller;
  readonly api: AdminServer;
  readonly logger: Logger;
  readonly tokenSource: 'env' | 'file' | 'generated';
  /** Start-up warnings (listeners bound beyond loopback); `cutover up` prints them too. */
  readonly warnings: string[];
  private readonly plugins: Plugin[];
  private stopped = false;
  private onHangup: (() => void) | null = null;
  private lock: StateLock | null = null;
  private snapshots: Snapshotter | null = null;
  private marker: MarkerWriter | null = null;

  private constructor(parts: Omit<Daemon, 'stop' | 'adminUrl' | 'liveUrl' | 'previewUrl' | 'reloadTls' | 'lock' | 'snapshots' | 'marker'> & { plugins: Plugin[] }) {
    this.config = parts.config; this.store = parts.store; this.provider = parts.provider; this.health = parts.health;
    this.router = parts.router; this.controller = parts.controller; this.api = parts.api; this.logger = parts.logger;
    this.tokenSource = parts.tokenSource; this.plugins = parts.plugins; this.warnings = parts.warnings;
  }

  /**
   * All or nothing (issue #15): the state-directory lock, the state checks and every listener come
   * first; any failure before the daemon is fully up undoes what was started — listeners closed,
   * instances left running (detached) for the next start to adopt, lock released — and throws, so
   * that `cutover up` exits non-zero with the reason (a supervisor restarts it) instead of running
   * on half-started with no admin API.
   */
  static async start(config: LoadedConfig, opts: DaemonOptions & { plugins?: PluginFactory[] } = {}): Promise<Daemon> {
    const logger = opts.logger ?? createLogger();
    const lock = StateLock.acquire(config.stateDir);
    const undo: (() => unknown)[] = [() => lock.release()];
    try {
      return await Daemon.startLocked(config, opts, logger, lock, undo);
    } catch (err) {
      for (const step of undo.reverse()) {
        try {
          await step();
        } catch (e) {
          logger.error({ err: e }, 'clean-up after a failed start failed');
        }
      }
      throw err;
    }
  }

  private static async startLocked(config: LoadedConfig, opts: DaemonOptions & { plugins?: PluginFactory[] }, logger: Logger, lock: StateLock, undo: (() => unknown)[]): Promise<Daemon> {
    const store = new SqliteStore(config.stateDir);
    undo.push(() => store.close());
    await guardState(store, config.stateDir, { processProvider: config.environments.provider === 'process', stopUnknownInstances: opts.stopUnknownInstances === true });
    const snapshots = new Snapshotter(store, config.stateDir, { onError: (err) => logger.warn({ err }, 'state snapshot failed') });
    const marker = new MarkerWriter(store, config.stateDir, logger);
    store.onGeneration = (_generation, rolesChanged) => { marker.schedule(); snapshots.changed(rolesChanged); };
    undo.push(async () => { store.onGeneration = null; marker.flush(); await snapshots.close(); });

    const { token, source: tokenSource } = ensureToken(config.stateDir, opts.env);
    const health = new HealthChecker({
      path: config.health.path, intervalMs: config.health.interval, timeoutMs: config.health.timeout,
      healthyThreshold: config.health.healthyThreshold, unhealthyThreshold: config.health.unhealthyThreshold, logger,
    });
    undo.push(() => health.close());
    const provider = makeProvider(config, logger, [token, ...configSecrets(config)]);
    const onRequestFns: ((r: RequestRecord) => void)[] = opts.onRequest ? [opts.onRequest] : [];
    const fds = descriptorPlan(config, logger);
    const router = new Router({
      listen: config.router.listen, preview: config.router.preview,
      drainTimeoutMs: config.router.drainTimeout, connectTimeoutMs: config.router.connectTimeout, responseTimeoutMs: config.router.responseTimeout,
      limits: {
        maxHeaderBytes: config.router.maxHeaderSize, maxHeaderCount: config.router.maxHeaderCount, maxUrlBytes: config.router.maxUrlLength,
        maxBodyBytes: config.router.maxBodySize, headersTimeoutMs: config.router.headersTimeout, requestTimeoutMs: config.router.requestTimeout,
      },
      maxConnections: { live: fds.budget.live, preview: fds.budget.preview },
      trustedProxies: config.router.trustedProxies, tls: config.router.tls ?? null,
      health, logger,
      onRequest: (r) => { for (const f of onRequestFns) f(r); },
    });
    const hooks: PipelineHooks = { ...(opts.hooks ?? {}) };
    const controller = new Controller({
      app: config.app, store, provider, health, router, logger, hooks,
      startTimeoutMs: config.environments.process?.startTimeout ?? config.health.timeout * 15,
      standbyKeepForMs: config.standby.keepFor, keepStandbyWarm: config.standby.keepWarmDuringDeploy,
    });
    // The admin listener before the router's: a taken admin port fails the start before any
    // traffic is served. It answers 503 "starting" until the daemon is fully up.
    const api = new AdminServer({ controller, token, logger, tls: config.admin.tls ?? null, starting: true });
    await api.listen(config.admin.listen.host, config.admin.listen.port);
    undo.push(() => api.close());
    // Promise 5: serve the recorded live colour first, before adoption or anything else.
    controller.restoreRoutes();
    undo.push(() => router.close());
    await router.start();
    // From here instances may be adopted or started: a failed start leaves them running, recorded.
    undo.push(() => provider.detach());
    undo.push(() => controller.close());
    await controller.recover();

    const plugins: Plugin[] = [];
    undo.push(async () => { for (const p of plugins) await p.close?.(); });
    const routerView = readOnly(router);
    for (const factory of opts.plugins ?? []) plugins.push(await factory({ config, controller, router: routerView, logger }));
    for (const p of plugins) {
      if (p.hooks) Object.assign(hooks, p.hooks);
      if (p.onRequest) onRequestFns.push(p.onRequest);
    }
    const extras: ApiExtras = { metricsPublic: config.admin.metricsPublic, ...(opts.extras ?? {}) };
    for (const p of plugins) if (p.extras) Object.assign(extras, p.extras);
    // Several plugins may add routes (telemetry, migrations…): ask each in turn, first to answer wins.
    const routeFns = plugins.flatMap((p) => (p.extras?.routes ? [p.extras.routes] : []));
    if (opts.extras?.routes) routeFns.unshift(opts.extras.routes);
    if (routeFns.length > 1) {
      extras.routes = async (ctx) => {
        for (const f of routeFns) if (await f(ctx)) return true;
        return false;
      };
    }
    api.ready(extras);

    const exposed = exposureWarnings(config);
    for (const w of exposed) logger.warn({ warning: 'exposed-listener' }, w);
    const weak = tokenWarnings(token, tokenSource);
    for (const w of weak) logger.warn({ warning: 'weak-token' }, w);
    const warnings = [...exposed, ...weak, ...fds.warnings];
    const d = new Daemon({ config, store, provider, health, router, controller, api, logger, tokenSource, plugins, warnings });
    d.lock = lock;
    d.snapshots = snapshots;
    d.marker = marker;
    if (config.router.tls || config.admin.tls) {
      // SIGHUP re-reads the certificates (renewals) without dropping a connection.
      d.onHangup = () => { d.reloadTls(); };
      process.on('SIGHUP', d.onHangup);
    }
    // The state this daemon accepted and recovered: the first snapshot of its run.
    void snapshots.take();
    logger.info({ live: d.liveUrl(), preview: d.previewUrl(), admin: d.adminUrl(), tokenFile: tokenSource === 'env' ? null : tokenFile(config.stateDir) }, 'cutover is up');
    return d;
  }

  adminUrl(): string {
    const a = this.api.address();
    return `${this.config.admin.tls ? 'https' : 'http'}://${hostPort({ host: connectableHost(a.address), port: a.port })}`;
  }

  liveUrl(): string { return `${this.config.router.tls ? 'https' : 'http'}://${hostPort(this.router.addresses().live)}`; }

  previewUrl(): string | null {
    const p = this.router.addresses().preview;
    return p ? `http://${hostPort(p)}` : null;
  }

  /**
   * Re-reads router.tls and admin.tls for new handshakes; open connections keep going. A file that
   * cannot be read or a key that does not match is refused (the current certificate stays) and recorded.
   */
  reloadTls(): { router: boolean; admin: boolean } {
    const out = { router: false, admin: false };
    for (const [name, reload] of [['router', () => this.router.reloadTls()], ['admin', () => this.api.reloadTls()]] as const) {
      try {
        out[name] = reload();
        if (out[name]) this.controller.record({ type: 'tls.reload', actor: 'cutover', reason: `${name} TLS certificate reloaded from ${this.config[name].tls?.cert}` });
      } catch (err) {
        this.controller.record({ type: 'tls.reload.failed', actor: 'cutover', reason: `${name} TLS certificate not reloaded, the current one stays: ${(err as Error).message}` });
      }
    }
    return out;
  }

  /**
   * Shut down. `stopInstances: false` leaves the environments running for the next daemon to
   * adopt (a daemon upgrade without downtime); true stops them (SIGTERM, then SIGKILL).
   */
  async stop(opts: { stopInstances: boolean }): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.onHangup) process.off('SIGHUP', this.onHangup);
    await this.api.close();
    await this.controller.close();
    for (const p of this.plugins) await p.close?.();
    if (opts.stopInstances) {
      await Promise.all((['blue', 'green'] as const).map(async (c) => {
        await this.provider.stop(c);
        await this.provider.stopHeld?.(c); // normally given back already, when the deployment was aborted
      }));
    } else {
      await this.provider.detach();
    }
    await this.router.close();
    await this.health.close();
    this.store.onGeneration = null;
    this.marker?.flush();
    // The state this run ends with; bounded, so a stuck copy cannot hold the shutdown.
    if (this.snapshots) await Promise.race([this.snapshots.take(), new Promise((r) => setTimeout(r, SHUTDOWN_SNAPSHOT_MS).unref())]);
    await this.snapshots?.close();
    this.store.close();
    this.lock?.release();
  }
}

/** What plugins get of the router: the read side only, also at run time (no cast reaches swap). */
function readOnly(router: DataPlane): RouterView {
  return Object.freeze({
    stats: Object.freeze({ query: router.stats.query.bind(router.stats), series: router.stats.series.bind(router.stats) }),
    addresses: () => router.addresses(),
    table: () => router.table(),
    inFlight: (listener, color) => router.inFlight(listener, color),
    rejections: () => router.rejections(),
    // The traffic sample's capture: copies chosen live requests into their record; moves no traffic.
    ...(router.setCapture ? { setCapture: router.setCapture.bind(router) } : {}),
  } satisfies RouterView);
}

/** The final snapshot at shutdown waits at most this long: 5 seconds. */
const SHUTDOWN_SNAPSHOT_MS = 5_000;

/** Writes the state marker after commits that changed roles or instances: coalesced, off the commit path. */
class MarkerWriter {
  readonly #store: SqliteStore;
  readonly #stateDir: string;
  readonly #logger: Logger;
  #pending = false;
  constructor(store: SqliteStore, stateDir: string, logger: Logger) {
    this.#store = store;
    this.#stateDir = stateDir;
    this.#logger = logger;
  }
  schedule(): void {
    if (this.#pending) return;
    this.#pending = true;
    setImmediate(() => this.flush());
  }
  flush(): void {
    if (!this.#pending) return;
    this.#pending = false;
    try {
      writeCurrentMarker(this.#store, this.#stateDir);
    } catch (err) {
      this.#logger.warn({ err }, 'state marker not written');
    }
  }
}

/**
 * Raise the soft descriptor limit, then size each listener's connection limit from it (fd-limit.ts).
 * Warnings: the limit could not be raised, or a configured router.maxConnections exceeds what it allows.
 */
function descriptorPlan(config: LoadedConfig, logger: Logger): { budget: ConnectionBudget; warnings: string[] } {
  const raised = raiseNofile();
  const warnings: string[] = [];
  if (raised.problem) warnings.push(raised.problem);
  const limit = raised.after?.soft ?? Number.POSITIVE_INFINITY;
  const budget = connectionBudget(limit, { live: config.router.maxConnections, preview: 'auto', reserve: config.router.descriptorReserve, hasPreview: config.router.preview !== null });
  const auto = connectionBudget(limit, { live: 'auto', preview: 'auto', reserve: config.router.descriptorReserve, hasPreview: config.router.preview !== null });
  if (config.router.maxConnections !== 'auto' && config.router.maxConnections > auto.live) {
    warnings.push(`router.maxConnections ${config.router.maxConnections} is more than the descriptor limit ${budget.limit} allows (${auto.live} with a reserve of ${budget.reserve}, two descriptors a connection): under load the daemon can run out of descriptors`);
  }
  for (const w of warnings) logger.warn({ warning: 'descriptors' }, w);
  logger.info({ nofile: raised.after, raisedFrom: raised.raised ? raised.before?.soft : undefined, maxConnections: { live: budget.live, preview: budget.preview }, descriptorReserve: budget.reserve }, raised.raised ? `descriptor limit raised from ${raised.before?.soft} to ${raised.after?.soft}` : 'descriptor limit');
  return { budget, warnings };
}

/** A CUTOVER_TOKEN short enough to guess: the failed-auth throttle never refuses the right token, so the token's length is the defence. */
export const MIN_TOKEN_CHARS = 16;

function tokenWarnings(token: string, source: 'env' | 'file' | 'generated'): string[] {
  if (token.length >= MIN_TOKEN_CHARS) return [];
  return [`the admin token (${source === 'env' ? 'CUTOVER_TOKEN' : 'token file'}) has only ${token.length} characters: use at least ${MIN_TOKEN_CHARS} random ones (e.g. \`openssl rand -base64 32\`)`];
}

function makeProvider(config: LoadedConfig, logger: Logger, secrets: string[]): EnvironmentProvider {
  const env = config.environments;
  if (env.provider === 'static' && env.static) {
    return new StaticProvider({ blue: env.static.blue, green: env.static.green, logger });
  }
  const p = env.process;
  if (!p) throw new Error('unreachable: the config schema requires environments.process');
  return new ProcessProvider({ stateDir: config.stateDir, command: p.command, instances: p.instances, env: p.env, inheritEnv: p.inheritEnv, secrets, stopGraceMs: p.stopTimeout, releaseDir: p.releaseDir, logger });
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}

/**
 * The admin API and the preview listener belong on loopback (or an internal network): say so at
 * start when either is bound wider. The live listener is meant to be public.
 */
export function exposureWarnings(config: LoadedConfig): string[] {
  const out: string[] = [];
  const a = config.admin.listen;
  if (!isLoopback(a.host)) {
    out.push(`admin API listens on ${hostPort(a)}, beyond loopback: anyone who reaches it can try the token${config.admin.tls ? '' : ', and it travels without TLS (set admin.tls)'}; keep it on 127.0.0.1 or behind a firewall`);
  }
  const p = config.router.preview;
  if (p && !isLoopback(p.host)) {
    out.push(`preview listener listens on ${hostPort(p)}, beyond loopback: it serves unreleased candidates without authentication; keep it internal`);
  }
  return out;
}

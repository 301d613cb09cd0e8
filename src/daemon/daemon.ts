/**
 * `cutover up`: composes store, environments, health, router, controller and admin API into
 * one process. Start-up order is the point: the state-directory lock and the state checks come
 * first, then every listener is bound (the admin API answers "starting"), the router serves the
 * recorded live colour before anything else happens (DESIGN promise 5), then instances are
 * adopted, then the API serves. A failure anywhere before "up" undoes the start (issue #15).
 * With `services:`, each service has its own store (and state checks, snapshots, marker),
 * provider, health checker, controller and plugins (services.ts) behind the one router and admin
 * API; certificates come from files or ACME (tls/).
 */
import { ChildRouterPlane } from '../router/child-router.ts';
import { routerSettings } from '../router/router-process.ts';
import { FleetDataPlane } from '../fleet/fleet-data-plane.ts';
import { AgentProvider } from '../fleet/agent-provider.ts';
import { recordsBodySchema } from '../fleet/records-push.ts';
import os from 'node:os';
import { openEtcd } from '../fleet/etcd.ts';
import { fleetKeys } from '../fleet/keys.ts';
import { Leadership } from '../fleet/leadership.ts';
import { EtcdStore } from '../store/etcd-store.ts';
import { FleetControllers, fleetTokenCheck } from './fleet-controllers.ts';
import { packageVersion } from '../lib/version.ts';
import { CutoverError } from '../lib/errors.ts';
import type { LoadedConfig } from '../config/schema.ts';
import type { SqliteStore } from '../store/sqlite-store.ts';
import type { EnvironmentProvider } from '../environments/types.ts';
import type { HealthChecker } from '../health/health-checker.ts';
import { Router, type ServiceRouter } from '../router/router.ts';
import { createDataPlane, engineHost, wantsEngine, type EngineEvent, type RouterHost } from '../engines/data-plane.ts';
import type { HAProxyEngine } from '../engines/haproxy/engine.ts';
import type { WorkerPool } from '../router/workers.ts';
import type { DataPlane, RequestRecord, RouterView } from '../router/data-plane.ts';
import { buildServiceMap } from '../router/service-map.ts';
import { Controller } from '../controller/controller.ts';
import { connectableHost, hostPort } from '../lib/address.ts';
import type { PipelineHooks } from '../plugin-api/hooks.ts';
import { AdminServer, type ApiService } from '../api/server.ts';
import type { ApiExtras, Plugin, PluginFactory } from '../plugin-api/plugin.ts';
import { ensureToken, tokenFile } from '../api/token.ts';
import { createLogger, type Logger } from '../lib/logger.ts';
import { configSecrets } from '../config/secrets.ts';
import { StateLock } from './state-lock.ts';
import { guardState, writeCurrentMarker } from './state-guard.ts';
import { Snapshotter } from '../store/snapshots.ts';
import { connectionBudget, raiseNofile, type ConnectionBudget } from './fd-limit.ts';
import { CertificateStore } from '../tls/certificate-store.ts';
import { AcmeManager } from '../tls/acme-manager.ts';
import { loadTlsFiles } from '../lib/tls-files.ts';
import { buildServiceParts, mergeExpositions, servicePlans, type ServicePlan } from './services.ts';

export interface DaemonOptions {
  /**
   * Where the router runs: inside this process (`embedded`, the library default), or as its own
   * `cutover router` process that survives this one (`process`, what `cutover up` does). With
   * `fleet:` in the config neither: routers run elsewhere and meet the controller in etcd.
   * (With `services:` the router stays in this process for now.)
   */
  dataPlane?: 'embedded' | 'process';
  logger?: Logger;
  /** Extra pipeline hooks (gates, analysis, migrations) built by the caller. */
  hooks?: PipelineHooks;
  extras?: ApiExtras;
  /** Called for every proxied request (metrics, analysis). */
  onRequest?: (r: RequestRecord) => void;
  env?: NodeJS.ProcessEnv;
  /** Fleet mode: this controller's name in the election (`cutover up --id`; default: the host name). */
  controllerId?: string;
  /**
   * Fleet mode: this controller stepped down (another leads, or its lease was lost). It has stopped
   * its controller and writes nothing; `cutover up` exits so that a supervisor starts it again as a
   * follower. Default: log only.
   */
  onDeposed?: (why: string) => void;
  /** `cutover up --stop-unknown-instances`: start although processes of this state directory run that state.db does not account for (recovery stops them). */
  stopUnknownInstances?: boolean;
}

/** One service's running parts. */
export interface ServiceRuntime {
  readonly name: string;
  readonly plan: ServicePlan;
  readonly store: SqliteStore;
  readonly provider: EnvironmentProvider;
  readonly health: HealthChecker;
  readonly controller: Controller;
  readonly router: ServiceRouter;
  readonly snapshots: Snapshotter;
  readonly marker: MarkerWriter;
  plugins: Plugin[];
}

export class Daemon {
  readonly config: LoadedConfig;
  /** Every service, in config order (one without `services:`); the fields below are the first one's. */
  readonly services: readonly ServiceRuntime[];
  readonly acme: AcmeManager | null;
  readonly certificates: CertificateStore | null;
  readonly store: SqliteStore;
  readonly provider: EnvironmentProvider;
  readonly health: HealthChecker;
  /** The data plane this daemon runs (the in-process Router, or an engine: router.engine / router.workers); only the controllers swap it. */
  readonly router: RouterHost;
  /** The supervised router process (`dataPlane: 'process'`), else null. */
  readonly childRouter: ChildRouterPlane | null;
  /** Fleet mode (`fleet:` in the config): routers elsewhere, met in etcd; else null. */
  readonly fleet: FleetDataPlane | null;
  /** Fleet mode: the election this controller takes part in (several controllers, one leader); else null. */
  readonly leadership: Leadership | null;
  readonly controller: Controller;
  readonly api: AdminServer;
  readonly logger: Logger;
  readonly tokenSource: 'env' | 'file' | 'generated';
  /** Start-up warnings (listeners bound beyond loopback); `cutover up` prints them too. */
  readonly warnings: string[];
  private stopped = false;
  private readonly closeFleet: () => Promise<void>;
  private onHangup: (() => void) | null = null;
  private readonly lock: StateLock;
  private readonly serviceLocks: readonly StateLock[];

  private constructor(parts: Pick<Daemon, 'config' | 'services' | 'acme' | 'certificates' | 'router' | 'childRouter' | 'fleet' | 'leadership' | 'api' | 'logger' | 'tokenSource' | 'warnings'> & { lock: StateLock; serviceLocks: readonly StateLock[]; closeFleet: () => Promise<void> }) {
    this.childRouter = parts.childRouter; this.fleet = parts.fleet; this.leadership = parts.leadership; this.closeFleet = parts.closeFleet;
    this.config = parts.config; this.services = parts.services; this.acme = parts.acme; this.certificates = parts.certificates;
    const first = parts.services[0];
    this.store = first.store; this.provider = first.provider; this.health = first.health; this.controller = first.controller;
    this.router = parts.router; this.api = parts.api; this.logger = parts.logger;
    this.tokenSource = parts.tokenSource; this.warnings = parts.warnings; this.lock = parts.lock; this.serviceLocks = parts.serviceLocks;
  }

  /** A service by name (throws for an unknown one). */
  service(name: string): ServiceRuntime {
    const s = this.services.find((x) => x.name === name);
    if (!s) throw new Error(`no service ${JSON.stringify(name)}`);
    return s;
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
    const { multi, plans } = servicePlans(config);
    const { token, source: tokenSource } = ensureToken(config.stateDir, opts.env);
    const secrets = [...new Set([token, ...configSecrets(config), ...(multi ? plans.flatMap((p) => configSecrets(p.config)) : [])])];
    const parts = [];
    const serviceLocks: StateLock[] = [];
    /** Set once this controller has joined the election (fleet mode); providers' etcd writes are fenced by it. */
    const leadershipRef: { current: Leadership | null } = { current: null };
    for (const plan of plans) {
      const log = multi ? logger.child({ service: plan.name }) : logger;
      if (multi) {
        // Each service's own directory is locked too, so `cutover state restore -s NAME` refuses while this runs.
        const l = StateLock.acquire(plan.config.stateDir);
        serviceLocks.push(l);
        undo.push(() => l.release());
      }
      // Desired-instance writes on agent hosts are fenced by the leadership made below (fleet mode).
      const built = buildServiceParts(plan, log, secrets, (t) => { for (const c of leadershipRef.current?.compares() ?? []) t = t.and(...c); return t; });
      const { store, health } = built;
      undo.push(() => store.close());
      // Each service's state is checked, snapshotted and marked in its own state directory.
      await guardState(store, plan.config.stateDir, { processProvider: plan.config.environments.provider === 'process', stopUnknownInstances: opts.stopUnknownInstances === true });
      const snapshots = new Snapshotter(store, plan.config.stateDir, { onError: (err) => log.warn({ err }, 'state snapshot failed') });
      const marker = new MarkerWriter(store, plan.config.stateDir, log);
      store.onGeneration = (_generation, rolesChanged) => { marker.schedule(); snapshots.changed(rolesChanged); };
      undo.push(async () => { store.onGeneration = null; marker.flush(); await snapshots.close(); });
      undo.push(() => health.close());
      // The caller's request observer sees every service's requests.
      parts.push({ plan, log, ...built, snapshots, marker, onRequestFns: opts.onRequest ? [opts.onRequest] : [] as ((r: RequestRecord) => void)[] });
    }

    const { certificates, acme } = certificateSources(config, plans, logger);
    const routerTls = config.router.tls;
    const tlsFiles = routerTls?.cert !== undefined && routerTls.key !== undefined ? { cert: routerTls.cert, key: routerTls.key } : null;
    const fds = descriptorPlan(config, logger);
    // router.engine: haproxy or router.workers > 1 (src/engines/): one service, no TLS listener (the config says so).
    const first = parts[0];
    const router: RouterHost = wantsEngine(config)
      ? engineHost(createDataPlane(config, {
        health: first.health, logger, maxConnections: { live: fds.budget.live, preview: fds.budget.preview },
        onRequest: (r: RequestRecord) => { for (const f of first.onRequestFns) f(r); },
      }) as HAProxyEngine | WorkerPool)
      : new Router({
      listen: config.router.listen, preview: config.router.preview,
      drainTimeoutMs: config.router.drainTimeout, connectTimeoutMs: config.router.connectTimeout, responseTimeoutMs: config.router.responseTimeout,
      limits: {
        maxHeaderBytes: config.router.maxHeaderSize, maxHeaderCount: config.router.maxHeaderCount, maxUrlBytes: config.router.maxUrlLength,
        maxBodyBytes: config.router.maxBodySize, headersTimeoutMs: config.router.headersTimeout, requestTimeoutMs: config.router.requestTimeout,
      },
      maxConnections: { live: fds.budget.live, preview: fds.budget.preview },
      trustedProxies: config.router.trustedProxies, tls: tlsFiles,
      previewAccess: config.router.previewAccess ? { ...config.router.previewAccess, secret: config.router.previewAccess.secret ?? null } : null,
      tlsListen: routerTls?.listen ?? null, certificates, acmeChallenge: acme ? (t) => acme.challengeResponse(t) : null,
      health: parts[0].health, logger,
      services: parts.map((p) => ({ name: p.plan.name, health: p.health, direct: multi, onRequest: (r: RequestRecord) => { for (const f of p.onRequestFns) f(r); } })),
      serviceMap: multi ? buildServiceMap(plans.map((p) => ({ name: p.name, hosts: p.hosts, paths: p.paths ?? undefined })), config.router.defaultService ?? null) : null,
      });
    // The data plane apart from this process (issue 10; docs/fleet.md): one service only for now.
    // What a router process does not serve yet: several services, the HTTP/2 TLS listener, ACME.
    const inProcessOnly = multi ? 'services:' : config.router.tls?.listen ? 'router.tls.listen' : config.router.tls?.acme ? 'router.tls.acme' : wantsEngine(config) ? 'router.engine/router.workers' : null;
    if (inProcessOnly !== null && opts.dataPlane === 'process') logger.warn(`with ${inProcessOnly} the router runs inside this process (a router process does not serve it yet)`);
    if (inProcessOnly !== null && config.fleet) throw new CutoverError('CUTOVER_ERR_CONFIG', `fleet: together with ${inProcessOnly} is not supported yet: remove one of them`, { details: { field: 'fleet' } });
    let childRouter: ChildRouterPlane | null = null;
    let fleet: FleetDataPlane | null = null;
    let leadership: Leadership | null = null;
    let fleetStore: EtcdStore | null = null;
    let fleetToken: Awaited<ReturnType<typeof fleetTokenCheck>> | null = null;
    let closeFleet = async () => {};
    let apart: ServiceRouter | null = null;
    const firstFns = parts[0].onRequestFns as ((r: RequestRecord) => void)[];
    const firstOnRequest = (r: RequestRecord) => { for (const f of firstFns) f(r); };
    if (inProcessOnly === null && config.fleet) {
      // Fleet mode: this process runs no router; tables go to etcd and routers acknowledge them there.
      // Several controllers may run: one leads (election in etcd), its state lives in etcd too (issue 11).
      const client = openEtcd(config.fleet);
      undo.push(() => client.close());
      const keys = fleetKeys(config.fleet.etcd.prefix, config.app);
      const id = opts.controllerId ?? os.hostname();
      const adminUrl = `${config.admin.tls ? 'https' : 'http'}://${hostPort({ host: connectableHost(config.admin.listen.host), port: config.admin.listen.port })}`;
      const l = new Leadership({ client, keys, id, admin: adminUrl, leaseTtlMs: config.fleet.leaseTtl, logger, endpoints: config.fleet.etcd.endpoints });
      undo.push(() => l.close());
      const es = new EtcdStore({ client, keys, leadership: l, logger, endpoints: config.fleet.etcd.endpoints });
      undo.push(() => es.close());
      fleetToken = await fleetTokenCheck(client, keys, token, config.fleet.etcd.endpoints);
      const f = new FleetDataPlane({ app: config.app, fleet: config.fleet, logger, addresses: { live: config.router.listen, preview: config.router.preview }, drainTimeoutMs: config.router.drainTimeout, onRequest: firstOnRequest, client });
      f.setPublisher((key, mod, value) => es.publish(key, mod, value));
      undo.push(() => f.close());
      await f.attach();
      leadership = l;
      leadershipRef.current = l;
      fleetStore = es;
      // What the stopped controller still committed goes out before the lead is given away (at once: followers need not wait for the lease).
      closeFleet = async () => { await Promise.race([es.flush().catch(() => {}), new Promise((r) => setTimeout(r, 5_000).unref())]); await l.close(); es.close(); client.close(); };
      fleet = f;
      apart = Object.assign(f, { name: plans[0].name }) as unknown as ServiceRouter;
    } else if (inProcessOnly === null && opts.dataPlane === 'process') {
      // Adopt the router that kept serving while no controller ran (kill -9, restart, upgrade), or
      // start one: before the controller exists, so that its revisions continue from the router's.
      // It inherits the descriptor limit raised above (rlimits pass to children).
      const c = new ChildRouterPlane({ settings: routerSettings(config, { version: await packageVersion(), maxConnections: { live: fds.budget.live, preview: fds.budget.preview } }), logger, health: parts[0].health, onRequest: firstOnRequest });
      const attached = await c.attach();
      // A failed start leaves a router process that serves live traffic running (fail-static); the
      // next start adopts it. One this start began that serves nothing live is stopped with it.
      undo.push(() => c.close({ stopRouter: !attached.adopted && c.table().live === null }));
      // What the controller's own checks find failing, the router ejects too (it re-admits on its own checks).
      parts[0].health.on('change', (id, healthy, reason) => { if (!healthy) c.reportDown(id, reason); });
      childRouter = c;
      apart = Object.assign(c, { name: plans[0].name }) as unknown as ServiceRouter;
    }
    const hooksOf = new Map<string, PipelineHooks>();
    const runtimes: ServiceRuntime[] = parts.map((p) => {
      const hooks: PipelineHooks = { ...(opts.hooks ?? {}) };
      hooksOf.set(p.plan.name, hooks);
      const view = apart ?? router.service(p.plan.name);
      const c = p.plan.config;
      const controller = new Controller({
        app: c.app, store: fleetStore ?? p.store, provider: p.provider, health: p.health, router: view, logger: p.log, hooks,
        startTimeoutMs: c.environments.process?.startTimeout ?? c.health.timeout * 15,
        standbyKeepForMs: c.standby.keepFor, keepStandbyWarm: c.standby.keepWarmDuringDeploy,
        gradual: c.switch && c.switch.steps.length > 0 ? { steps: c.switch.steps, stepDurationMs: c.switch.stepDuration, stickiness: c.switch.stickiness } : null,
      });
      return { name: p.plan.name, plan: p.plan, store: p.store, provider: p.provider, health: p.health, controller, router: view, snapshots: p.snapshots, marker: p.marker, plugins: [] };
    });
    // The admin listener before the router's: a taken admin port fails the start before any
    // traffic is served. It answers 503 "starting" until the daemon is fully up.
    let fleetControllers: FleetControllers | null = null;
    if (leadership && fleetStore && fleet) {
      const c0 = runtimes[0].controller;
      fleetControllers = new FleetControllers({
        id: leadership.id, leadership, store: fleetStore, fleet, controller: c0, health: runtimes[0].health, logger,
        onUnreachable: (why) => {
          logger.error({ reason: why }, 'etcd does not answer: this controller stopped leading (its pipeline and timers are stopped); it answers reads until etcd is back');
          void c0.close();
        },
        onDeposed: (why) => {
          // Final for this process: nothing it still does may write (the fence refuses it anyway).
          void c0.close();
          (opts.onDeposed ?? ((w: string) => logger.error({ reason: w }, 'this controller stepped down; it serves reads only until restarted')))(why);
        },
      });
      const l = leadership;
      c0.extendStatus('leader', () => { const x = l.leader(); return x ? { id: x.id, admin: x.admin, since: x.since } : null; });
      c0.extendStatus('controllers', () => l.controllers().map((x) => ({ id: x.id, admin: x.admin, host: x.host, pid: x.pid, leader: x.leader, self: x.id === l.id })));
    }
    const fc = fleetControllers;
    const fleetHooks = fc && fleetStore && fleetToken
      ? { id: leadership!.id, forwardTarget: () => fc.forwardTarget(), settled: (ms: number) => fc.settled(ms), durable: ((s: EtcdStore) => () => s.flush())(fleetStore), tokenMatches: fleetToken.matches, followed: fc.followed }
      : undefined;
    if (fleetToken?.warning) logger.warn(fleetToken.warning);
    const api = new AdminServer({ controller: runtimes[0].controller, token, logger, tls: config.admin.tls ?? null, starting: true, fleet: fleetHooks });
    await api.listen(config.admin.listen.host, config.admin.listen.port);
    undo.push(() => api.close());
    // Promise 5: serve the recorded live colour of every service first, before adoption or anything else.
    // An adopted router process already serves it; it gets the same routes under the next revision.
    // Several controllers (fleet): only the leader does, when it takes over (fleet-controllers.ts).
    const restored = fleetControllers ? [] : await Promise.all(runtimes.map((r) => r.controller.restoreRoutes()));
    if (router.engine) {
      // What happens to the data plane itself (HAProxy restarted, attached) is recorded like any event.
      router.engine.onEvent = (e: EngineEvent) => {
        try { runtimes[0].controller.record({ type: e.type, actor: 'cutover', reason: e.reason, data: e.data ?? null }); } catch (err) { logger.error({ err: (err as Error).message, event: e.type }, 'could not record a data-plane event'); }
      };
    }
    undo.push(() => router.close());
    if (apart === null) await router.start();
    await Promise.all(restored.map((x) => x.applied));
    // From here instances may be adopted or started: a failed start leaves them running, recorded.
    for (const r of runtimes) {
      undo.push(() => r.provider.detach());
      undo.push(() => r.controller.close());
    }
    if (fleetControllers) await fleetControllers.start();
    else for (const r of runtimes) await r.controller.recover();
    for (const r of runtimes) {
      // Instances on `cutover agent` hosts: status --json says which agents are registered and what each runs.
      const p = r.provider;
      if (p instanceof AgentProvider) r.controller.extendStatus('agents', () => p.agentStatus());
    }
    if (fleet) {
      const c0 = runtimes[0].controller;
      const l = leadership;
      fleet.on('joined', (reg) => l && !l.isLeader() ? undefined : c0.record({ type: 'router.joined', actor: 'cutover', reason: `router ${reg.id} (${reg.host}, pid ${reg.pid}, cutover ${reg.version}) joined the fleet; live ${reg.live}`, data: { ...reg } }));
      fleet.on('left', (id) => l && !l.isLeader() ? undefined : c0.record({ type: 'router.left', actor: 'cutover', reason: `router ${id} left the fleet: its lease expired or it stopped; switches no longer wait for it`, data: { id } }));
    }
    if (multi) {
      // Which service this is and where users reach it; its `router.live`/`.preview` are its own loopback listeners.
      for (const r of runtimes) {
        r.controller.extendStatus('service', () => ({
          name: r.name, hosts: r.plan.hosts, paths: r.plan.paths,
          listeners: { live: `http://${hostPort(router.addresses().live)}`, tls: router.tlsAddress() ? `https://${hostPort(router.tlsAddress()!)}` : null },
        }));
      }
    }
    if (acme) {
      for (const r of runtimes) r.controller.extendStatus('tls', () => ({ certificates: acme.status().filter((h) => !multi || r.plan.hosts.includes(h.host)) }));
      // Each outcome is an event of the service that owns the host (status, history, webhooks).
      acme.onEvent = (e) => {
        const owner = runtimes.find((r) => r.plan.hosts.includes(e.host)) ?? runtimes[0];
        owner.controller.record({ type: e.type, actor: 'cutover', reason: e.reason, data: e.data });
      };
      undo.push(() => acme.close());
      // In the background: a slow or absent ACME server never holds the daemon's start.
      acme.start();
    }

    const apiServices = new Map<string, ApiService>();
    const extras: ApiExtras = { metricsPublic: config.admin.metricsPublic, ...(opts.extras ?? {}) };
    const metricsFns: NonNullable<ApiExtras['metrics']>[] = [];
    for (const r of runtimes) undo.push(async () => { for (const p of r.plugins) await p.close?.(); });
    for (const [i, r] of runtimes.entries()) {
      const p = parts[i];
      for (const factory of opts.plugins ?? []) {
        r.plugins.push(await factory({ config: r.plan.config, controller: r.controller, router: readOnly(r.router), logger: p.log, ...(multi ? { service: r.name } : {}), primary: i === 0 }));
      }
      for (const pl of r.plugins) {
        if (pl.hooks) Object.assign(hooksOf.get(r.name)!, pl.hooks);
        if (pl.onRequest) p.onRequestFns.push(pl.onRequest);
        if (pl.extras?.metrics) metricsFns.push(pl.extras.metrics);
        if (pl.extras?.ui && !extras.ui) extras.ui = pl.extras.ui;
        if (pl.extras?.metricsPublic !== undefined) extras.metricsPublic = pl.extras.metricsPublic;
      }
      // Several plugins may add routes (telemetry, migrations…): ask each in turn, first to answer wins.
      const routeFns = r.plugins.flatMap((pl) => (pl.extras?.routes ? [pl.extras.routes] : []));
      if (fleet && i === 0) routeFns.unshift(fleetRecordsRoute(fleet));
      if (opts.extras?.routes) routeFns.unshift(opts.extras.routes);
      apiServices.set(r.name, {
        controller: r.controller, hosts: r.plan.hosts,
        routes: routeFns.length === 0 ? undefined : async (ctx) => {
          for (const f of routeFns) if (await f(ctx)) return true;
          return false;
        },
      });
    }
    if (opts.extras?.metrics) metricsFns.unshift(opts.extras.metrics);
    if (metricsFns.length === 1) extras.metrics = metricsFns[0];
    else if (metricsFns.length > 1) {
      extras.metrics = async () => {
        const all = await Promise.all(metricsFns.map((f) => f()));
        return { contentType: all[0].contentType, body: mergeExpositions(all.map((m) => m.body)) };
      };
    }
    api.ready(extras, apiServices);

    const exposed = exposureWarnings(config);
    for (const w of exposed) logger.warn({ warning: 'exposed-listener' }, w);
    const weak = tokenWarnings(token, tokenSource);
    for (const w of weak) logger.warn({ warning: 'weak-token' }, w);
    const warnings = [...exposed, ...weak, ...fds.warnings];
    const d = new Daemon({ config, services: runtimes, acme, certificates, router, childRouter, fleet, leadership, closeFleet, api, logger, tokenSource, warnings, lock, serviceLocks });
    if (config.router.tls || config.admin.tls || plans.some((p) => p.tls)) {
      // SIGHUP re-reads the certificates (renewals) without dropping a connection.
      d.onHangup = () => { d.reloadTls(); };
      process.on('SIGHUP', d.onHangup);
    }
    // The state this daemon accepted and recovered: the first snapshot of its run.
    for (const r of runtimes) void r.snapshots.take();
    logger.info({ live: d.liveUrl(), preview: d.previewUrl(), tls: d.tlsUrl(), admin: d.adminUrl(), services: multi ? runtimes.map((r) => r.name) : undefined, tokenFile: tokenSource === 'env' ? null : tokenFile(config.stateDir) }, 'cutover is up');
    return d;
  }

  adminUrl(): string {
    const a = this.api.address();
    return `${this.config.admin.tls ? 'https' : 'http'}://${hostPort({ host: connectableHost(a.address), port: a.port })}`;
  }

  liveUrl(): string { return `${this.config.router.tls && !this.config.router.tls.listen ? 'https' : 'http'}://${hostPort(this.router.addresses().live)}`; }

  /** `router.tls.listen` (HTTPS, HTTP/2 and HTTP/1.1), or null. */
  tlsUrl(): string | null {
    const a = this.router.tlsAddress();
    return a ? `https://${hostPort(a)}` : null;
  }

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
    for (const s of this.services) {
      if (!s.plan.tls || !this.certificates) continue;
      try {
        this.certificates.setFiles(s.plan.hosts, s.plan.tls, `services.${s.name}.tls`);
        s.controller.record({ type: 'tls.reload', actor: 'cutover', reason: `services.${s.name}.tls certificate reloaded from ${s.plan.tls.cert}` });
      } catch (err) {
        s.controller.record({ type: 'tls.reload.failed', actor: 'cutover', reason: `services.${s.name}.tls certificate not reloaded, the current one stays: ${(err as Error).message}` });
      }
    }
    const routerTls = this.config.router.tls;
    const reloadRouter = () => {
      if (this.childRouter) return this.childRouter.reloadTls();
      const changed = this.router.reloadTls();
      // With a TLS listener of its own, the router.tls pair is also the SNI fallback for unknown names.
      if (changed && this.certificates && routerTls?.cert !== undefined && routerTls.key !== undefined) this.certificates.setFallback(loadTlsFiles({ cert: routerTls.cert, key: routerTls.key }, 'router.tls'));
      return changed;
    };
    for (const [name, reload] of [['router', reloadRouter], ['admin', () => this.api.reloadTls()]] as const) {
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
  async stop(opts: { stopInstances: boolean; stopRouter?: boolean }): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.onHangup) process.off('SIGHUP', this.onHangup);
    // A step that fails is logged and the rest still runs: above all, the router process must
    // still be told to stop (or be left for the next controller) and the locks released.
    const step = async (what: string, fn: () => unknown): Promise<void> => {
      try { await fn(); } catch (err) { this.logger.error({ err: (err as Error).message, step: what }, 'shutdown step failed; going on'); }
    };
    await step('admin API', () => this.api.close());
    await step('acme', () => this.acme?.close());
    for (const s of this.services) {
      await step(`controller ${s.name}`, () => s.controller.close());
      for (const p of s.plugins) await step(`plugin of ${s.name}`, () => p.close?.());
    }
    // A controller of a fleet never stops the application on its way out: the next leader takes it over as it is.
    const stopInstances = opts.stopInstances && this.leadership === null;
    await step('instances', () => Promise.all(this.services.map(async (s) => {
      if (stopInstances) {
        await Promise.all((['blue', 'green'] as const).map(async (c) => {
          await s.provider.stop(c);
          await s.provider.stopHeld?.(c); // normally given back already, when the deployment was aborted
        }));
        await s.provider.detach(); // nothing left to supervise (and an agent provider closes its etcd client)
      } else {
        await s.provider.detach();
      }
    })));
    // --keep-instances: an HAProxy engine keeps serving for the next daemon, which attaches to it.
    await step('router', () => this.router.close({ keepRunning: !stopInstances }));
    // The router process drains and exits with the instances; with --keep-instances it stays for the next controller.
    await step('router process', () => this.childRouter?.close({ stopRouter: opts.stopRouter ?? stopInstances }));
    await step('fleet', () => this.fleet?.close());
    await step('fleet controllers', () => this.closeFleet());
    for (const s of this.services) {
      await s.health.close();
      s.store.onGeneration = null;
      s.marker.flush();
      // The state this run ends with; bounded, so a stuck copy cannot hold the shutdown.
      await Promise.race([s.snapshots.take(), new Promise((r) => setTimeout(r, SHUTDOWN_SNAPSHOT_MS).unref())]);
      await s.snapshots.close();
      s.store.close();
    }
    for (const l of this.serviceLocks) l.release();
    this.lock.release();
  }
}

/**
 * Where the TLS listener's certificates come from: `router.tls` files (the fallback for names
 * without one of their own), each service's `tls` files for its hosts, and ACME for every other
 * service host (or `router.tls.acme.hosts` without services). Null when nothing uses SNI.
 */
function certificateSources(config: LoadedConfig, plans: readonly ServicePlan[], logger: Logger): { certificates: CertificateStore | null; acme: AcmeManager | null } {
  const t = config.router.tls;
  if (!t?.listen) return { certificates: null, acme: null };
  const store = new CertificateStore();
  if (t.cert !== undefined && t.key !== undefined) store.setFallback(loadTlsFiles({ cert: t.cert, key: t.key }, 'router.tls'));
  for (const p of plans) if (p.tls) store.setFiles(p.hosts, p.tls, `services.${p.name}.tls`);
  let acme: AcmeManager | null = null;
  if (t.acme) {
    const hosts = config.services ? plans.filter((p) => !p.tls).flatMap((p) => p.hosts) : (t.acme.hosts ?? []);
    acme = new AcmeManager({
      directory: t.acme.directory, email: t.acme.email, caFile: t.acme.caFile, renewBeforeMs: t.acme.renewBefore,
      hosts, stateDir: config.stateDir, store, logger,
    });
  }
  return { certificates: store, acme };
}

/** What plugins get of the router: the read side only, also at run time (no cast reaches swap). */
/** POST /api/v1/fleet/records: a fleet router's request records (fleet/records-push.ts). */
function fleetRecordsRoute(fleet: FleetDataPlane): NonNullable<ApiExtras['routes']> {
  return async (ctx) => {
    if (ctx.method !== 'POST' || ctx.path !== '/fleet/records') return false;
    const parsed = recordsBodySchema.safeParse(await ctx.body());
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue.path.join('.') || '(body)';
      throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `${field}: ${issue.message}`, { details: { field } });
    }
    fleet.ingest(parsed.data);
    ctx.res.writeHead(204).end();
    return true;
  };
}

function readOnly(router: DataPlane): RouterView {
  return Object.freeze({
    stats: Object.freeze({ query: router.stats.query.bind(router.stats), series: router.stats.series.bind(router.stats) }),
    addresses: () => router.addresses(),
    table: () => router.table(),
    inFlight: (listener, color) => router.inFlight(listener, color),
    rejections: () => router.rejections(),
    mirrorReport: (id) => router.mirrorReport(id),
    // The traffic sample's capture: copies chosen live requests into their record; moves no traffic.
    ...(router.setCapture ? { setCapture: router.setCapture.bind(router) } : {}),
    // A sampling data plane (HAProxy engine) reports every request while a judge holds this.
    ...(router.everyRequest ? { everyRequest: router.everyRequest.bind(router) } : {}),
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

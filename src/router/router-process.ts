/**
 * `cutover router`: the data plane as its own process. It serves the last route table it was
 * given for as long as it runs, whatever happens to the controller, and health-checks the targets
 * of that table itself (so "never route to an instance seen failing" holds with the controller
 * gone, and on every host of a fleet from that host's own view of the network).
 *
 * Tables come from a controller over the control socket (one machine: dataplane/child-router.ts)
 * or from etcd (fleet mode: fleet/fleet-router.ts). Each applied revision is acknowledged.
 * A newer router process started on the same stateDir takes over: it asks this one for its
 * table, binds the same ports (SO_REUSEPORT), then this one stops accepting, drains and exits.
 *
 * Owns: the control socket server, the local health checks, batching request records back.
 * Must never: apply an older revision over a newer one, swap to an empty table once it served a
 * real one, or stop serving because a controller (or etcd) went away.
 */
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readlinkSync, renameSync, symlinkSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { HealthChecker } from '../health/health-checker.ts';
import { Router } from './router.ts';
import type { DrainReport, RequestRecord } from './data-plane.ts';
import { EMPTY_ROUTE_TABLE, type RouteTable } from './route-table.ts';
import { captureFromSpec, type CaptureSpec } from './capture-spec.ts';
import type { Logger } from '../lib/logger.ts';
import type { LoadedConfig } from '../config/schema.ts';
import type { TlsFiles } from '../lib/tls-files.ts';
import type { PreviewAccessOptions } from './preview-access.ts';
import {
  controlSocketPath, encodeRecord, MAX_PENDING_RECORDS, PROTOCOL_VERSION, readMessages, send, STATS_FLUSH_MS,
  type FromRouter, type ToRouter, type WireRecord,
} from './control-protocol.ts';

/** The environment variable a router started by `cutover up` reads its settings from (JSON). */
export const SETTINGS_ENV = 'CUTOVER_ROUTER_SETTINGS';

/** How long a newer router waits for the running one to hand over before it gives up: 5 seconds. */
export const HANDOVER_TIMEOUT_MS = 5_000;
/** Controller connections whose socket buffers more than this get no stats batch (dropped, counted): 4 MiB. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** Everything a router process needs, derived from cutover.yaml (the same file on every host). */
export interface RouterSettings {
  app: string;
  id: string;
  stateDir: string;
  version: string;
  listen: { host: string; port: number };
  preview: { host: string; port: number } | null;
  drainTimeoutMs: number;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  limits: { maxHeaderBytes: number; maxHeaderCount: number; maxUrlBytes: number; maxBodyBytes: number; headersTimeoutMs: number; requestTimeoutMs: number };
  trustedProxies: readonly string[];
  tls: TlsFiles | null;
  /** `router.previewAccess`: preview on the live listener by header, cookie or signed value. */
  previewAccess?: PreviewAccessOptions | null;
  health: { path: string; intervalMs: number; timeoutMs: number; healthyThreshold: number; unhealthyThreshold: number };
  /** Client connections each listener holds at most (from the descriptor limit; daemon/fd-limit.ts); absent: none. */
  maxConnections?: { live: number; preview: number };
}

export function routerSettings(config: LoadedConfig, o: { id?: string; version: string; listen?: { host: string; port: number }; preview?: { host: string; port: number } | null; maxConnections?: { live: number; preview: number } }): RouterSettings {
  const r = config.router;
  return {
    app: config.app,
    id: o.id ?? `${config.app}-router`,
    stateDir: config.stateDir,
    version: o.version,
    listen: o.listen ?? r.listen,
    preview: o.preview === undefined ? r.preview : o.preview,
    drainTimeoutMs: r.drainTimeout,
    connectTimeoutMs: r.connectTimeout,
    responseTimeoutMs: r.responseTimeout,
    limits: { maxHeaderBytes: r.maxHeaderSize, maxHeaderCount: r.maxHeaderCount, maxUrlBytes: r.maxUrlLength, maxBodyBytes: r.maxBodySize, headersTimeoutMs: r.headersTimeout, requestTimeoutMs: r.requestTimeout },
    trustedProxies: r.trustedProxies,
    tls: r.tls?.cert !== undefined && r.tls.key !== undefined ? { cert: r.tls.cert, key: r.tls.key } : null,
    previewAccess: r.previewAccess ? { ...r.previewAccess, secret: r.previewAccess.secret ?? null } : null,
    health: { path: config.health.path, intervalMs: config.health.interval, timeoutMs: config.health.timeout, healthyThreshold: config.health.healthyThreshold, unhealthyThreshold: config.health.unhealthyThreshold },
    ...(o.maxConnections ? { maxConnections: o.maxConnections } : {}),
  };
}

/** What a router collected since its last flush: per-request records, lanes in flight, refusals. */
export interface StatsBatch { records: WireRecord[]; inFlight: [number, number, number, number]; rejections: Record<string, number>; dropped: number }

export interface RouterProcessEvents {
  applied: [revision: number];
  /** The drain of the colour that left the live listener at `revision` ended. */
  drained: [revision: number, report: DrainReport];
  /** The process has nothing left to serve (retired by a newer router, or stopped). */
  exit: [reason: string];
}

let socketSerial = 0;

export class RouterProcess extends EventEmitter<RouterProcessEvents> {
  readonly settings: RouterSettings;
  readonly router: Router;
  readonly health: HealthChecker;
  readonly socketPath: string;
  readonly startedAt = Date.now();
  readonly #log: Logger;
  #control: net.Server | null = null;
  /** Our own socket file (`router.sock.<pid>`); `router.sock` is a symlink to the current router's. */
  #ownSocket: string | null = null;
  readonly #controllers = new Set<net.Socket>();
  /** Other receivers of the batches (fleet mode: the push to the controller's admin API). */
  readonly #sinks: ((b: StatsBatch) => void)[] = [];
  #pending: WireRecord[] = [];
  #dropped = 0;
  #flushTimer: NodeJS.Timeout | null = null;
  #appliedAt: number | null = null;
  #retiring = false;
  /** The traffic sample's capture a controller set (handed over to a newer router), or null. */
  #capture: CaptureSpec | null = null;
  #exiting: Promise<void> | null = null;
  readonly #onShutdown: (() => Promise<void>)[] = [];

  private constructor(settings: RouterSettings, logger: Logger) {
    super();
    this.settings = settings;
    this.#log = logger.child({ component: 'router-process', router: settings.id });
    this.socketPath = controlSocketPath(settings.stateDir);
    this.health = new HealthChecker({ ...settings.health, logger });
    this.router = new Router({
      listen: settings.listen, preview: settings.preview,
      drainTimeoutMs: settings.drainTimeoutMs, connectTimeoutMs: settings.connectTimeoutMs, responseTimeoutMs: settings.responseTimeoutMs,
      limits: settings.limits, trustedProxies: settings.trustedProxies, tls: settings.tls, previewAccess: settings.previewAccess ?? null,
      id: settings.id,
      reusePort: true,
      ...(settings.maxConnections ? { maxConnections: settings.maxConnections } : {}),
      health: {
        isHealthy: (id) => this.health.isHealthy(id),
        reportFailure: (id, reason) => {
          this.health.reportFailure(id, reason);
          for (const s of this.#controllers) send(s, { t: 'failure', id, reason });
        },
      },
      logger,
      onRequest: (r) => this.#collect(r),
    });
  }

  /**
   * Start serving: take over from a router already running on this stateDir (its table, then its
   * ports), or start with `initial` (fleet mode: the last table from etcd), else empty until a
   * controller sends one.
   */
  static async start(settings: RouterSettings, logger: Logger, initial: RouteTable | null = null): Promise<RouterProcess> {
    const p = new RouterProcess(settings, logger);
    mkdirSync(path.dirname(p.socketPath), { recursive: true, mode: 0o700 });
    const previous = await connectPrevious(p.socketPath);
    let table = initial;
    if (previous !== null) {
      const theirs = await previous.handover();
      if (table === null || theirs.table.revision > table.revision) table = theirs.table;
      // Keep sampling across the takeover; the controller re-sends its spec when it re-attaches.
      p.setCapture(theirs.capture);
    }
    if (table !== null) p.apply(table);
    await p.router.start();
    await p.#listenControl();
    if (previous !== null) {
      previous.retire();
      p.#log.info({ revision: p.router.table().revision }, 'took over the listeners from the previous router process; it drains and exits');
    }
    p.#flushTimer = setInterval(() => p.#flush(), STATS_FLUSH_MS);
    p.#flushTimer.unref();
    p.#log.info({ addresses: p.router.addresses(), control: p.socketPath, revision: p.router.table().revision }, 'cutover router is up');
    return p;
  }

  /**
   * Apply a table: newer revisions only (a late or repeated message never moves traffic back),
   * never an empty one over a table that routes somewhere. Returns whether it was applied.
   */
  apply(table: RouteTable): boolean {
    const cur = this.router.table();
    if (table.revision <= cur.revision && cur !== EMPTY_ROUTE_TABLE) {
      if (table.revision === cur.revision) this.#ack(cur.revision); // a repeat: say again what we have
      return false;
    }
    if (table.live === null && cur.live !== null) {
      this.#log.error({ revision: table.revision, current: cur.revision }, 'refused a route table without a live colour over one that has it (never serve an empty table)');
      return false;
    }
    this.#watchTargets(table);
    const { drain } = this.router.swap(table);
    this.#appliedAt = Date.now();
    if (drain) {
      drain.then((report) => {
        for (const s of this.#controllers) send(s, { t: 'drain', revision: table.revision, report });
        this.emit('drained', table.revision, report);
      }, () => {});
    }
    this.#ack(table.revision);
    this.emit('applied', table.revision);
    return true;
  }

  /** Re-read router.tls for new handshakes; a bad pair is refused and logged (the current one stays). */
  reloadTls(): void {
    try {
      if (this.router.reloadTls()) this.#log.info('router TLS certificate reloaded');
    } catch (err) {
      this.#log.error({ err }, 'router TLS certificate not reloaded; the current one stays');
    }
  }

  /** Copy the live requests `spec` chooses into the records sent to controllers, or stop (null). */
  setCapture(spec: CaptureSpec | null): void {
    this.#capture = spec;
    this.router.setCapture(spec === null ? null : captureFromSpec(spec));
  }

  capture(): CaptureSpec | null {
    return this.#capture;
  }

  appliedAt(): number | null {
    return this.#appliedAt;
  }

  /** Run `fn` first when the process begins to stop (fleet mode: leave the router set at once, then drain). */
  onShutdown(fn: () => Promise<void>): void {
    this.#onShutdown.push(fn);
  }

  /** Stop accepting, drain what is in flight, exit. `retire` (a newer router took the ports) or `stop`. */
  shutdown(reason: string): Promise<void> {
    if (this.#exiting) return this.#exiting;
    this.#retiring = true;
    this.#exiting = (async () => {
      this.#log.info({ reason }, 'router stopping: draining');
      for (const fn of this.#onShutdown) await fn().catch((err: unknown) => this.#log.warn({ err }, 'shutdown step failed'));
      this.#closeControl();
      const r = await this.router.retire();
      this.#log.info({ ...r }, r.completed ? 'router drained' : 'router drain timed out; the rest was closed');
      this.#flush();
      if (this.#flushTimer) clearInterval(this.#flushTimer);
      for (const s of this.#controllers) s.end();
      await this.health.close();
      this.emit('exit', reason);
    })();
    return this.#exiting;
  }

  /** Immediate close (tests, fatal errors): no drain. */
  async close(): Promise<void> {
    for (const fn of this.#onShutdown) await fn().catch(() => {});
    if (this.#flushTimer) clearInterval(this.#flushTimer);
    this.#closeControl();
    for (const s of this.#controllers) s.destroy();
    await this.router.close();
    await this.health.close();
  }

  #watchTargets(table: RouteTable): void {
    const ids = new Set<string>();
    for (const route of [table.live, table.preview]) {
      for (const t of route?.targets ?? []) {
        ids.add(t.id);
        // Optimistic for a target never checked: the controller only routes live traffic to
        // instances its own checks passed; ours correct this within one interval, and a refused
        // connection ejects at once. A target this router saw failing stays out.
        this.health.watch(t, { assumeHealthy: true });
      }
    }
    for (const route of [this.router.table().live, this.router.table().preview]) {
      for (const t of route?.targets ?? []) if (!ids.has(t.id)) this.health.unwatch(t.id);
    }
  }

  #ack(revision: number): void {
    const at = this.#appliedAt ?? Date.now();
    for (const s of this.#controllers) send(s, { t: 'applied', revision, appliedAt: at });
  }

  /** Also hand every batch to `sink` (called every STATS_FLUSH_MS; must not block). */
  addRecordSink(sink: (b: StatsBatch) => void): void {
    this.#sinks.push(sink);
  }

  #collect(r: RequestRecord): void {
    if (this.#controllers.size === 0 && this.#sinks.length === 0) return; // nobody to tell
    if (this.#pending.length >= MAX_PENDING_RECORDS) { this.#dropped++; return; }
    this.#pending.push(encodeRecord(r, Date.now()));
  }

  #flush(): void {
    const records = this.#pending;
    this.#pending = [];
    const lanes = this.router;
    const inFlight: [number, number, number, number] = [lanes.inFlight('live', 'blue'), lanes.inFlight('live', 'green'), lanes.inFlight('preview', 'blue'), lanes.inFlight('preview', 'green')];
    const rejections = this.router.rejections();
    // The counts of a mirroring run in force (a shadow gate reads them on the controller's side).
    const mirrorId = this.router.table().mirror?.id;
    const mirror = mirrorId ? this.router.mirrorReport(mirrorId) : null;
    for (const s of this.#controllers) {
      if (s.writableLength > MAX_BUFFERED_BYTES) { this.#dropped += records.length; continue; }
      send(s, { t: 'stats', records, inFlight, rejections, dropped: this.#dropped, mirror });
    }
    // Captured requests are for the controller on this machine only (the fleet push carries none).
    const plain = this.#sinks.length > 0 && this.#capture !== null ? records.map((w) => (w.length > 8 ? w.slice(0, 8) as WireRecord : w)) : records;
    for (const sink of this.#sinks) {
      try { sink({ records: plain, inFlight, rejections, dropped: this.#dropped }); } catch { /* a sink must not break the flush */ }
    }
  }

  #hello(): FromRouter {
    return {
      t: 'hello', protocol: PROTOCOL_VERSION, id: this.settings.id, pid: process.pid, version: this.settings.version, startedAt: this.startedAt,
      table: this.router.table(), appliedAt: this.#appliedAt, addresses: this.router.addresses(), retiring: this.#retiring,
    };
  }

  /**
   * Listen on a socket file of our own (`router.sock.<pid>`) and point `router.sock` at it with a
   * symlink swapped in by rename (atomic). Node unlinks a Unix socket's file whenever its server
   * is closed, on exit too: with a file per process, an old router that exits after a takeover
   * can only remove its own file, never the newer router's.
   */
  async #listenControl(): Promise<void> {
    // Per process and per instance (two in one process: the unit tests).
    const own = `${this.socketPath}.${process.pid}${(++socketSerial).toString(36)}`;
    try { unlinkSync(own); } catch { /* none */ }
    const server = net.createServer((socket) => this.#onController(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(own, () => { server.off('error', reject); resolve(); });
    });
    // Only this user may send tables (the path may be under the shared temp dir for a long stateDir).
    chmodSync(own, 0o600);
    const link = `${own}.link`;
    try { unlinkSync(link); } catch { /* none */ }
    symlinkSync(path.basename(own), link);
    renameSync(link, this.socketPath);
    this.#control = server;
    this.#ownSocket = own;
  }

  /** Stop taking controller connections; remove `router.sock` only while it still points at us. */
  #closeControl(): void {
    const server = this.#control;
    this.#control = null;
    if (server === null) return;
    try {
      if (this.#ownSocket !== null && readlinkSync(this.socketPath) === path.basename(this.#ownSocket)) unlinkSync(this.socketPath);
    } catch { /* gone, or a newer router's */ }
    server.close(); // removes our own socket file only
  }

  #onController(socket: net.Socket): void {
    socket.on('error', () => socket.destroy());
    this.#controllers.add(socket);
    socket.on('close', () => this.#controllers.delete(socket));
    send(socket, this.#hello());
    readMessages<ToRouter>(socket, (m) => {
      switch (m.t) {
        case 'table':
          if (this.#retiring) { send(socket, { t: 'error', message: 'this router is retiring; send tables to the newer one' }); return; }
          this.apply(m.table);
          return;
        case 'down':
          this.health.markDown(m.id, m.reason);
          return;
        case 'handover':
          // A newer router: it must not get stats (it is not a controller).
          this.#controllers.delete(socket);
          send(socket, { t: 'handover', table: this.router.table(), capture: this.#capture });
          return;
        case 'retire':
          this.#controllers.delete(socket);
          void this.shutdown('a newer router process took over the listeners');
          return;
        case 'reload-tls':
          this.reloadTls();
          return;
        case 'capture':
          this.setCapture(m.spec);
          return;
        case 'stop':
          void this.shutdown('stopped by the controller');
          return;
      }
    });
  }
}

/** The router already serving this stateDir, if one answers on its control socket. */
async function connectPrevious(socketPath: string): Promise<{ handover: () => Promise<{ table: RouteTable; capture: CaptureSpec | null }>; retire: () => void } | null> {
  if (!existsSync(socketPath)) return null;
  const socket = await new Promise<net.Socket | null>((resolve) => {
    const s = net.createConnection(socketPath);
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null)); // stale file: nobody there
  });
  if (socket === null) return null;
  socket.on('error', () => {});
  const table = new Promise<{ table: RouteTable; capture: CaptureSpec | null }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the running router on ${socketPath} did not hand over within ${HANDOVER_TIMEOUT_MS}ms`)), HANDOVER_TIMEOUT_MS);
    readMessages<FromRouter>(socket, (m) => {
      if (m.t === 'handover') { clearTimeout(timer); resolve({ table: m.table, capture: m.capture ?? null }); }
    });
    socket.once('close', () => { clearTimeout(timer); reject(new Error('the running router closed the control socket during the handover')); });
  });
  return {
    handover: () => { send(socket, { t: 'handover' }); return table; },
    retire: () => { send(socket, { t: 'retire' }); socket.end(); },
  };
}

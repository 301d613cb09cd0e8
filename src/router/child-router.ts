/**
 * The data plane on one machine: a `cutover router` process next to the controller. The
 * controller adopts the router already serving its stateDir (after `kill -9`, a restart or an
 * upgrade of the controller) or starts one, detached in its own session, so that the router
 * outlives the controller and never takes a signal meant for it. Tables go over the control
 * socket; a switch is acknowledged when the router says it applied the revision; per-request
 * records come back in batches and feed the same RequestStats and request hooks that gates,
 * analysis, metrics and the dashboard read in the embedded mode.
 *
 * Supervision: when the control socket closes, reconnect; when no router answers, start a new one
 * (it serves the table the controller holds). Owns: that process and its socket, on this side.
 * Must never: kill a router that serves traffic without a replacement, or block the controller
 * on a router that is away (acknowledgements time out and are reported).
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { CutoverError } from '../lib/errors.ts';
import type { Color } from '../environments/types.ts';
import type { HealthView } from '../health/types.ts';
import type { ApplyReport, DataPlane, DrainReport, RequestCapture, RequestRecord, RouterInfo, SwapResult } from './data-plane.ts';
import type { CaptureSpec, PortableCapture } from './capture-spec.ts';
import { RequestStats, type ListenerName } from './request-stats.ts';
import { EMPTY_ROUTE_TABLE, type RouteTable } from './route-table.ts';
import type { Logger } from '../lib/logger.ts';
import { controlSocketPath, decodeRecord, laneOf, PROTOCOL_VERSION, readMessages, send, type Addresses, type FromRouter } from './control-protocol.ts';
import { SETTINGS_ENV, type RouterSettings } from './router-process.ts';
import type { MirrorReport } from './mirror-diff.ts';

export const BIN = fileURLToPath(new URL('../../bin/cutover.js', import.meta.url));
/** Time a new router process gets to answer on its control socket: 15 seconds. */
export const ROUTER_START_TIMEOUT_MS = 15_000;
/** After the control socket closes, how long to look for a router (a newer one taking over) before starting one: 1 second. */
export const RECONNECT_GRACE_MS = 1_000;
/** Default wait for a router's acknowledgement of a revision (fleet.ackTimeout in fleet mode): 5 seconds. */
export const DEFAULT_ACK_TIMEOUT_MS = 5_000;

interface AckWaiter { revision: number; publishedAt: number; resolve: (r: ApplyReport) => void; timer: NodeJS.Timeout }

export interface ChildRouterOptions {
  settings: RouterSettings;
  logger: Logger;
  /** Controller-side health: the router's passive failures are reported into it. */
  health: HealthView;
  onRequest: (r: RequestRecord) => void;
  ackTimeoutMs?: number;
}

export class ChildRouterPlane extends EventEmitter<{ connected: [hello: FromRouter & { t: 'hello' }]; disconnected: [] }> implements DataPlane {
  readonly stats = new RequestStats();
  readonly socketPath: string;
  readonly #o: ChildRouterOptions;
  readonly #log: Logger;
  readonly #ackTimeoutMs: number;
  #socket: net.Socket | null = null;
  /** What the routers must serve: the last table published (or adopted). */
  #desired: RouteTable = EMPTY_ROUTE_TABLE;
  #acked = 0;
  #ackMs: number | null = null;
  #lastSeen: number | null = null;
  #hello: (FromRouter & { t: 'hello' }) | null = null;
  #addresses: Addresses;
  #inFlight: [number, number, number, number] = [0, 0, 0, 0];
  readonly #waiters = new Set<AckWaiter>();
  readonly #drains = new Map<number, { color: Color; resolve: (d: DrainReport) => void; startedAt: number }>();
  #rejections: Record<string, number> = {};
  readonly #mirrors = new Map<string, MirrorReport>();
  /** The traffic sample's capture, as data: sent on every hello, so a re-attach or a new router keeps sampling. */
  #capture: CaptureSpec | null = null;
  #closed = false;
  #reconnecting: Promise<void> | null = null;

  constructor(o: ChildRouterOptions) {
    super();
    this.#o = o;
    this.#log = o.logger.child({ component: 'data-plane' });
    this.#ackTimeoutMs = o.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
    this.socketPath = controlSocketPath(o.settings.stateDir);
    this.#addresses = { live: o.settings.listen, preview: o.settings.preview };
  }

  /**
   * Adopt the router serving this stateDir, or start one. Resolves once it said hello; afterwards
   * `table()` is what it serves (the controller continues its revisions from there).
   */
  async attach(): Promise<{ adopted: boolean; pid: number; revision: number }> {
    let socket = await tryConnect(this.socketPath);
    let adopted = true;
    if (socket === null) {
      adopted = false;
      socket = await this.#spawnAndConnect();
    }
    const hello = await this.#use(socket);
    if (hello.table.revision > this.#desired.revision) this.#desired = hello.table;
    this.#log.info({ pid: hello.pid, revision: hello.table.revision, adopted, version: hello.version }, adopted ? 'adopted the running router process' : 'started a router process');
    return { adopted, pid: hello.pid, revision: hello.table.revision };
  }

  table(): RouteTable {
    return this.#desired;
  }

  addresses(): Addresses {
    return this.#addresses;
  }

  swap(next: RouteTable): SwapResult {
    const prev = this.#desired;
    this.#desired = next;
    const publishedAt = performance.now();
    if (this.#socket) send(this.#socket, { t: 'table', table: next });
    let drain: Promise<DrainReport> | null = null;
    const from = prev.live?.color ?? null;
    if (from !== null && from !== (next.live?.color ?? null)) {
      drain = new Promise<DrainReport>((resolve) => this.#drains.set(next.revision, { color: from, resolve, startedAt: performance.now() }));
    }
    const applied = new Promise<ApplyReport>((resolve) => {
      if (this.#acked >= next.revision) { resolve(this.#report(next.revision, publishedAt, true)); return; }
      const w: AckWaiter = {
        revision: next.revision, publishedAt, resolve,
        timer: setTimeout(() => { this.#waiters.delete(w); resolve(this.#report(next.revision, publishedAt, false)); }, this.#ackTimeoutMs),
      };
      w.timer.unref();
      this.#waiters.add(w);
    });
    return { revision: next.revision, drain, applied };
  }

  routers(): RouterInfo[] {
    const h = this.#hello;
    if (h === null) return [];
    const t = this.#desired;
    const route = (r: RouteTable['live']) => (r === null ? null : { color: r.color, version: r.version });
    return [{
      id: h.id, pid: h.pid, version: h.version, revision: this.#acked,
      live: route(t.revision === this.#acked ? t.live : h.table.live), preview: route(t.revision === this.#acked ? t.preview : h.table.preview),
      stale: this.#socket === null || this.#acked < t.revision, lastSeen: this.#lastSeen, ackMs: this.#ackMs,
    }];
  }

  /** Requests plus WebSockets in flight in the router process (as of its last batch, ≤ 50 ms old). */
  inFlight(listener: ListenerName, color?: Color): number {
    if (color !== undefined) return this.#inFlight[laneOf(listener, color)];
    return this.#inFlight[laneOf(listener, 'blue')] + this.#inFlight[laneOf(listener, 'green')];
  }

  reloadTls(): boolean {
    if (this.#socket === null || this.#o.settings.tls === null) return false;
    return send(this.#socket, { t: 'reload-tls' }) || true;
  }

  /**
   * Copy chosen live requests into their records, in the router process (it rebuilds `wants`
   * from the capture's `spec`), or stop (null). A capture without a spec cannot cross the
   * process boundary: nothing is sampled, and that is logged.
   */
  setCapture(capture: RequestCapture | null): void {
    const spec = capture === null ? null : (capture as PortableCapture).spec ?? null;
    if (capture !== null && spec === null) this.#log.warn('a request capture without a spec cannot reach the router process: nothing is sampled');
    this.#capture = spec;
    if (this.#socket) send(this.#socket, { t: 'capture', spec });
  }

  /** Tell the router an instance is down (the controller saw it exit or fail its checks). */
  reportDown(id: string, reason: string): void {
    if (this.#socket) send(this.#socket, { t: 'down', id, reason });
  }

  /**
   * Leave the router running for the next controller (`detach`), or stop it: it stops accepting,
   * drains what is in flight (router.drainTimeout) and exits.
   */
  async close(o: { stopRouter: boolean }): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters) { clearTimeout(w.timer); w.resolve(this.#report(w.revision, w.publishedAt, false)); }
    this.#waiters.clear();
    // Between a lost control socket and the reconnect: the router process is still there (or a
    // newer one took over). To stop it, reach it on its socket; never leave it running unasked.
    await this.#reconnecting?.catch(() => {});
    let s = this.#socket;
    this.#socket = null;
    if (s === null && o.stopRouter) s = await tryConnect(this.socketPath);
    if (s === null) return;
    if (!o.stopRouter) { s.end(); return; }
    const pid = this.#hello?.pid;
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve());
      send(s, { t: 'stop' });
    });
    // The socket closes when the router has drained; the process exits right after.
    if (pid !== undefined) await waitForExit(pid, 5_000);
  }

  #report(revision: number, publishedAt: number, ok: boolean): ApplyReport {
    const ms = performance.now() - publishedAt;
    const id = this.#hello?.id ?? this.#o.settings.id;
    if (ok) return { revision, ms, acknowledged: [id], missing: [], ackMs: { [id]: ms } };
    return { revision, ms, acknowledged: [], missing: [id] };
  }

  /** Counts of a mirroring run, as of the router process's last batch (≤ 50 ms old). */
  mirrorReport(id: string): MirrorReport | null {
    return this.#mirrors.get(id) ?? null;
  }

  /** Requests the router process refused before reaching any colour, by status (as of its last batch). */
  rejections(): Record<string, number> {
    return { ...this.#rejections };
  }

  /** Wire a connected control socket; resolves with the router's hello. */
  #use(socket: net.Socket): Promise<FromRouter & { t: 'hello' }> {
    this.#socket = socket;
    return new Promise((resolve, reject) => {
      let greeted = false;
      socket.on('error', (err) => this.#log.debug({ err }, 'control socket error'));
      socket.once('close', () => {
        if (!greeted) reject(new CutoverError('CUTOVER_ERR_INTERNAL', 'the router process closed its control socket before saying hello'));
        this.#onClose(socket);
      });
      readMessages<FromRouter>(socket, (m) => {
        this.#lastSeen = Date.now();
        if (m.t === 'hello') {
          if (m.protocol !== PROTOCOL_VERSION) {
            socket.destroy();
            reject(new CutoverError('CUTOVER_ERR_INTERNAL', `the router process speaks control protocol ${m.protocol}, this controller ${PROTOCOL_VERSION}`));
            return;
          }
          greeted = true;
          this.#hello = m;
          this.#acked = m.table.revision;
          this.#addresses = m.addresses;
          // It serves an older table than ours (a router started while we held a newer one): send ours.
          if (m.table.revision < this.#desired.revision) send(socket, { t: 'table', table: this.#desired });
          else this.#settle(m.table.revision);
          // Always, also null: a router adopted from an earlier controller may still copy for it.
          send(socket, { t: 'capture', spec: this.#capture });
          this.emit('connected', m);
          resolve(m);
          return;
        }
        this.#onMessage(m);
      });
    });
  }

  #onMessage(m: FromRouter): void {
    switch (m.t) {
      case 'applied':
        if (m.revision > this.#acked) this.#acked = m.revision;
        this.#settle(m.revision);
        return;
      case 'stats': {
        this.#inFlight = m.inFlight;
        this.#rejections = m.rejections;
        if (m.mirror) this.#mirrors.set(m.mirror.id, m.mirror);
        const hook = this.#o.onRequest;
        for (const w of m.records) {
          const r = decodeRecord(w);
          this.stats.record(r.listener, r.color, r.status, r.durationMs, r.error, r.at);
          try { hook(r); } catch { /* a metrics hook must not break the relay */ }
        }
        return;
      }
      case 'drain': {
        const d = this.#drains.get(m.revision);
        if (d) { this.#drains.delete(m.revision); d.resolve(m.report); }
        return;
      }
      case 'failure':
        this.#o.health.reportFailure(m.id, `router: ${m.reason}`);
        return;
      case 'error':
        this.#log.warn({ message: m.message }, 'router refused a message');
        return;
      default:
        return;
    }
  }

  #settle(revision: number): void {
    for (const w of this.#waiters) {
      if (w.revision > revision) continue;
      clearTimeout(w.timer);
      this.#waiters.delete(w);
      const report = this.#report(w.revision, w.publishedAt, true);
      this.#ackMs = report.ms ?? null;
      w.resolve(report);
    }
  }

  #onClose(socket: net.Socket): void {
    if (this.#socket !== socket) return;
    this.#socket = null;
    this.emit('disconnected');
    // Its drains end with it (a replaced router drains its own connections before exiting).
    for (const [rev, d] of this.#drains) {
      this.#drains.delete(rev);
      d.resolve({ color: d.color, revision: rev, durationMs: performance.now() - d.startedAt, completed: false, closedRequests: 0, closedWebSockets: 0 });
    }
    if (this.#closed) return;
    this.#log.warn({ pid: this.#hello?.pid }, 'lost the router process control socket; reconnecting');
    this.#reconnecting ??= this.#reconnect().finally(() => { this.#reconnecting = null; });
  }

  async #reconnect(): Promise<void> {
    const deadline = performance.now() + RECONNECT_GRACE_MS;
    while (!this.#closed) {
      const s = await tryConnect(this.socketPath);
      if (this.#closed) { s?.destroy(); return; }
      try {
        if (s !== null) { await this.#use(s); this.#log.info({ pid: this.#hello?.pid }, 're-attached to the router process'); return; }
        if (performance.now() > deadline) {
          this.#log.error({ revision: this.#desired.revision, connect: lastConnectError }, 'no router process answers: starting one with the current table');
          await this.#use(await this.#spawnAndConnect());
          return;
        }
      } catch (err) {
        this.#log.error({ err }, 'router process start failed; trying again');
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async #spawnAndConnect(): Promise<net.Socket> {
    const logDir = path.join(this.#o.settings.stateDir, 'logs');
    mkdirSync(logDir, { recursive: true, mode: 0o700 });
    const logFile = path.join(logDir, 'router.log');
    const fd = openSync(logFile, 'a', 0o600);
    let exited: string | null = null;
    try {
      const child = spawn(process.execPath, [...nodeFlags(), BIN, 'router'], {
        // Own session: Ctrl-C in the terminal and a kill of the controller's process group never reach it.
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { ...process.env, [SETTINGS_ENV]: JSON.stringify(this.#o.settings) },
      });
      child.once('exit', (code, signal) => { exited = signal ?? `code ${code}`; });
      child.unref();
    } finally {
      closeSync(fd);
    }
    const deadline = performance.now() + ROUTER_START_TIMEOUT_MS;
    for (;;) {
      const s = await tryConnect(this.socketPath);
      if (s !== null) return s;
      if (exited !== null || performance.now() > deadline) {
        const tail = readTail(logFile);
        throw new CutoverError('CUTOVER_ERR_INTERNAL', `the router process ${exited !== null ? `exited (${exited})` : `did not answer within ${ROUTER_START_TIMEOUT_MS}ms`}${tail ? `: ${tail}` : ''} (log: ${logFile})`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** The Node.js flags of bin/cutover.js's first line (the router runs as `cutover` does). */
function nodeFlags(): string[] {
  try {
    const first = readFileSync(BIN, 'utf8').split('\n', 1)[0];
    const m = /node\s+(.*)$/.exec(first);
    return m ? m[1].split(/\s+/).filter((f) => f.startsWith('--')) : [];
  } catch {
    return [];
  }
}

/** Why the last connect to a control socket failed (logged when a router is started for want of one). */
let lastConnectError = '';

function tryConnect(socketPath: string): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.createConnection(socketPath);
    s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
    s.once('error', (err: NodeJS.ErrnoException) => { lastConnectError = err.code ?? err.message; resolve(null); });
  });
}

async function waitForExit(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try { process.kill(pid, 0); } catch { return; }
    await new Promise((r) => setTimeout(r, 25));
  }
}

function readTail(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return lines.slice(-3).join(' | ').slice(0, 800);
  } catch {
    return '';
  }
}

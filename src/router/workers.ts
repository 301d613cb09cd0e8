/**
 * The builtin router on every core (`router.workers: N|auto`): N worker threads, each a complete
 * Router bound with SO_REUSEPORT to the same live and preview ports, each holding the same route
 * table. The kernel spreads new connections among them.
 *
 * - swap: the table goes to every worker; `applied(revision)` resolves only when every worker has
 *   acknowledged it (the same rule as a fleet of routers: a switch counts when all swapped), and
 *   the drain resolves when every worker's drain did (completed only if all completed).
 * - health: verdicts stay with the health checker in this thread; workers get each change, and
 *   their passive failure reports come back here.
 * - stats: workers send finished requests in batches (every 50 ms); they are counted here, into
 *   one RequestStats and the same request hook, so gates, analysis and metrics see one router.
 *
 * Owns: the threads and the fan-out/fan-in. Must never: swap a worker out of order, or report a
 * revision applied before every worker acknowledged it.
 */
import { Worker } from 'node:worker_threads';
import type { EventEmitter } from 'node:events';
import type { Color } from '../environments/types.ts';
import type { HealthView } from '../health/types.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import type { DataPlane, DrainReport, RequestCapture, SwapResult } from './data-plane.ts';
import type { CaptureSpec, PortableCapture } from './capture-spec.ts';
import { RequestStats, type ListenerName } from './request-stats.ts';
import { EMPTY_ROUTE_TABLE, freezeTable, type RouteTable } from './route-table.ts';
import type { RouterOptions } from './router.ts';
import type { RequestRecord } from './data-plane.ts';
import { decodeRecords, RECORD_SLOTS, type FromWorker, type ToWorker, type WorkerInit } from './worker-protocol.ts';

/** A worker that does not acknowledge a revision within this time is logged. */
export const WORKER_ACK_WARN_MS = 2_000;
/** …and after this long the swap's `applied` settles naming it in `missing` (a stuck or dead worker). */
export const WORKER_ACK_TIMEOUT_MS = 5_000;

type Addresses = { live: { host: string; port: number }; preview: { host: string; port: number } | null };

interface Slot {
  index: number;
  worker: Worker;
  revision: number;
  inFlight: number[];
  rejections: Record<string, number>;
  /** Requests this worker finished (for tests and the bench: the kernel spreads connections). */
  served: number;
  /** False once the thread exited (it is being replaced). */
  alive: boolean;
  addresses: Addresses;
  closed: Promise<void>;
}

interface PendingDrain {
  revision: number;
  /** By worker index: one report each. */
  reports: Map<number, DrainReport>;
  resolve: (r: DrainReport) => void;
}

export interface WorkerPoolOptions extends RouterOptions {
  workers: number;
  health: HealthView & Partial<Pick<EventEmitter, 'on' | 'off'>>;
}

export class WorkerPool implements DataPlane {
  readonly stats = new RequestStats();
  /** The service this data plane serves (ServiceRouter.name; set by the daemon). */
  name = 'app';
  /** The pool reports nothing of its own as events (a replaced worker is logged). */
  onEvent?: (e: { type: string; reason: string; data?: Record<string, unknown> }) => void;
  readonly #o: WorkerPoolOptions;
  readonly #logger: Logger;
  #slots: Slot[] = [];
  #table: RouteTable = EMPTY_ROUTE_TABLE;
  #addresses: Addresses;
  #waiters: { revision: number; resolve: () => void }[] = [];
  #drains = new Map<number, PendingDrain>();
  #tlsWaiters: ((r: { ok: boolean; error: string | null }) => void)[] = [];
  /** The traffic sample's capture, as data each worker rebuilds (`wants` cannot cross threads). */
  #capture: CaptureSpec | null = null;
  #closed = false;
  #onHealth = (id: string, healthy: boolean) => this.#broadcast({ type: 'health', id, healthy });

  constructor(o: WorkerPoolOptions) {
    this.#o = o;
    this.#logger = (o.logger ?? silentLogger).child({ component: 'router-workers' });
    this.#addresses = { live: o.listen, preview: o.preview };
  }

  get size(): number {
    return this.#o.workers;
  }

  table(): RouteTable {
    return this.#table;
  }

  addresses(): Addresses {
    return this.#addresses;
  }

  /** Starts the workers one after the other: the first binds (port 0 → a real port), the rest join it. */
  async start(): Promise<void> {
    if (this.#slots.length > 0) return;
    for (let i = 0; i < this.#o.workers; i++) {
      const slot = await this.#spawn(i);
      this.#slots.push(slot);
      if (i === 0) this.#addresses = slot.addresses;
    }
    this.#o.health.on?.('change', this.#onHealth);
    this.#logger.info({ workers: this.#o.workers, addresses: this.#addresses }, 'router listening on worker threads');
  }

  /** The worker threads (tests end one to see the pool replace it). */
  get threads(): readonly Worker[] {
    return this.#slots.map((s) => s.worker);
  }

  /** Starts worker `i` with the current table and health, bound to the pool's ports; resolves once it listens. */
  #spawn(i: number): Promise<Slot> {
    const { health, logger, onRequest, workers, ...rest } = this.#o;
    void health; void logger; void onRequest; void workers;
    const options = { ...rest, listen: this.#addresses.live, preview: this.#addresses.preview, reusePort: true };
    const init: WorkerInit = { index: i, options, table: this.#table, down: this.#downIds(), logLevel: this.#logger.level, wantRecords: true, capture: this.#capture };
    const worker = new Worker(new URL('./worker-entry.ts', import.meta.url), { workerData: init });
    const slot: Slot = {
      index: i, worker, revision: this.#table.revision, inFlight: [0, 0, 0, 0], rejections: {}, served: 0, alive: true, addresses: this.#addresses,
      closed: new Promise((r) => worker.once('exit', () => r())),
    };
    return new Promise<Slot>((resolve, reject) => {
      let listening = false;
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'listening') {
          listening = true;
          slot.addresses = m.addresses;
          resolve(slot);
        } else if (m.type === 'failed') reject(new Error(`router worker ${i} could not listen: ${m.error}`));
        else this.#onMessage(slot, m);
      });
      worker.once('error', (err) => { if (!listening) reject(err); else this.#logger.error({ worker: i, err: err.message }, 'router worker failed'); });
      worker.once('exit', (code) => {
        if (!listening) { reject(new Error(`router worker ${i} exited with code ${code}`)); return; }
        if (!this.#closed) this.#replace(i, slot, code);
      });
    });
  }

  /**
   * A worker died (its connections with it): the others keep serving; it no longer counts for
   * acknowledgements or drains, and a new worker takes its place with the current table.
   */
  #replace(i: number, dead: Slot, code: number): void {
    dead.alive = false;
    this.#logger.error({ worker: i, code }, 'router worker exited; starting a new one');
    const color = this.#table.live?.color === 'blue' ? 'green' : 'blue';
    for (const d of [...this.#drains.values()]) {
      if (!d.reports.has(i)) this.#drainReport(d, i, { color, revision: d.revision, durationMs: 0, completed: false, closedRequests: 0, closedWebSockets: 0 });
    }
    this.#settleWaiters();
    const retry = (delay: number) => {
      if (this.#closed) return;
      this.#spawn(i).then((slot) => {
        if (this.#closed) { void slot.worker.terminate(); return; }
        this.#slots[i] = slot;
        // What changed while it started: the table in force, every instance's health.
        if (slot.revision < this.#table.revision) slot.worker.postMessage({ type: 'swap', table: this.#table } satisfies ToWorker);
        slot.worker.postMessage({ type: 'capture', spec: this.#capture } satisfies ToWorker);
        for (const r of [this.#table.live, this.#table.preview]) for (const t of r?.targets ?? []) slot.worker.postMessage({ type: 'health', id: t.id, healthy: this.#o.health.isHealthy(t.id) } satisfies ToWorker);
        this.#logger.info({ worker: i }, 'router worker replaced');
      }, (err: Error) => {
        this.#logger.error({ worker: i, err: err.message }, 'router worker could not start; retrying');
        setTimeout(() => retry(Math.min(5_000, delay * 2)), delay).unref();
      });
    };
    retry(250);
  }

  /**
   * Copy chosen live requests into their records, in every worker (each rebuilds `wants` from
   * the capture's `spec`), or stop (null). A capture without a spec cannot reach the threads.
   */
  setCapture(capture: RequestCapture | null): void {
    const spec = capture === null ? null : (capture as PortableCapture).spec ?? null;
    if (capture !== null && spec === null) this.#logger.warn('a request capture without a spec cannot reach the router workers: nothing is sampled');
    this.#capture = spec;
    this.#broadcast({ type: 'capture', spec });
  }

  swap(next: RouteTable): SwapResult {
    const table = Object.isFrozen(next) ? next : freezeTable(next);
    const prev = this.#table;
    this.#table = table;
    if (this.#slots.length === 0) return { revision: table.revision, drain: null, applied: Promise.resolve({ revision: table.revision, acknowledged: [], missing: [] }) };
    const from = prev.live?.color ?? null;
    const to = table.live?.color ?? null;
    let drain: Promise<DrainReport> | null = null;
    if (from !== null && from !== to) {
      drain = new Promise((resolve) => this.#drains.set(table.revision, { revision: table.revision, reports: new Map(), resolve }));
    }
    this.#broadcast({ type: 'swap', table });
    const warn = setTimeout(() => {
      const late = this.#slots.map((s, i) => (s.revision < table.revision ? i : -1)).filter((i) => i >= 0);
      if (late.length > 0) this.#logger.warn({ revision: table.revision, workers: late }, 'router workers have not acknowledged the revision yet');
    }, WORKER_ACK_WARN_MS);
    warn.unref();
    let giveUp: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => { giveUp = setTimeout(resolve, WORKER_ACK_TIMEOUT_MS); giveUp.unref(); });
    const applied = Promise.race([this.applied(table.revision), timedOut]).then(() => {
      clearTimeout(warn);
      clearTimeout(giveUp);
      // A worker that died serves nothing (its replacement starts with the table in force).
      const ids = this.#slots.filter((s) => s.alive).map((s) => ({ id: this.#workerId(s.index), ok: s.revision >= table.revision }));
      return { revision: table.revision, acknowledged: ids.filter((x) => x.ok).map((x) => x.id), missing: ids.filter((x) => !x.ok).map((x) => x.id) };
    });
    return { revision: table.revision, drain, applied };
  }

  #workerId(i: number): string {
    return `${this.#o.id ?? 'router'}/worker-${i}`;
  }

  /** Resolves once every worker has acknowledged `revision` (or a later one). */
  applied(revision: number): Promise<void> {
    if (this.#minRevision() >= revision) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ revision, resolve }));
  }

  inFlight(listener: ListenerName, color?: Color): number {
    const base = listener === 'live' ? 0 : 2;
    let n = 0;
    for (const s of this.#slots) n += color === undefined ? s.inFlight[base] + s.inFlight[base + 1] : s.inFlight[base + (color === 'blue' ? 0 : 1)];
    return n;
  }

  /**
   * Mirroring counts live in each worker; they are not gathered (the config refuses a mirror gate
   * with workers > 1).
   */
  mirrorReport(): null {
    return null;
  }

  /** Requests finished by each worker so far. */
  served(): number[] {
    return this.#slots.map((s) => s.served);
  }

  rejections(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.#slots) for (const [k, v] of Object.entries(s.rejections)) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  /** Every worker re-reads the certificate; throws (the current one stays) if any refused it. */
  reloadTls(): boolean {
    if (!this.#o.tls) return false;
    this.#broadcast({ type: 'reloadTls' });
    return true;
  }

  /** Like reloadTls, and resolves with every worker's answer. */
  reloadTlsAll(): Promise<{ ok: boolean; error: string | null }[]> {
    const answers = this.#slots.map(() => new Promise<{ ok: boolean; error: string | null }>((r) => this.#tlsWaiters.push(r)));
    this.reloadTls();
    return Promise.all(answers);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.health.off?.('change', this.#onHealth);
    this.#broadcast({ type: 'close' });
    await Promise.all(this.#slots.map((s) => Promise.race([s.closed, new Promise<void>((r) => setTimeout(r, 10_000).unref())])));
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
    for (const d of this.#drains.values()) d.resolve(merge([...d.reports.values()], d.revision, this.#table));
    this.#drains.clear();
    this.#logger.info('router workers closed');
  }

  // ── internals ──

  #broadcast(m: ToWorker): void {
    for (const s of this.#slots) if (s.alive) s.worker.postMessage(m);
  }

  #settleWaiters(): void {
    const min = this.#minRevision();
    const ready = this.#waiters.filter((w) => w.revision <= min);
    this.#waiters = this.#waiters.filter((w) => w.revision > min);
    for (const w of ready) w.resolve();
  }

  /** One worker's drain report; the pool's drain settles when every worker's has (a dead worker's counts as cut). */
  #drainReport(d: PendingDrain, index: number, r: DrainReport): void {
    d.reports.set(index, r);
    if (d.reports.size >= this.#slots.length) {
      this.#drains.delete(d.revision);
      d.resolve(merge([...d.reports.values()], d.revision, this.#table));
    }
  }

  #downIds(): string[] {
    const ids: string[] = [];
    for (const r of [this.#table.live, this.#table.preview]) for (const t of r?.targets ?? []) if (!this.#o.health.isHealthy(t.id)) ids.push(t.id);
    return ids;
  }

  #minRevision(): number {
    let min = Infinity;
    for (const s of this.#slots) if (s.alive) min = Math.min(min, s.revision);
    return min === Infinity ? this.#table.revision : min;
  }

  #onMessage(slot: Slot, m: FromWorker): void {
    switch (m.type) {
      case 'records': {
        slot.inFlight = m.inFlight;
        slot.rejections = m.rejections;
        slot.served += m.records.length / RECORD_SLOTS;
        const hook = this.#o.onRequest;
        decodeRecords(m.records, (r: RequestRecord) => {
          this.stats.record(r.listener, r.color, r.status, r.durationMs, r.error);
          if (hook !== undefined) {
            try { hook(r); } catch { /* a metrics hook must not break the data plane */ }
          }
        }, m.captured);
        break;
      }
      case 'swapped': {
        slot.revision = Math.max(slot.revision, m.revision);
        this.#settleWaiters();
        break;
      }
      case 'drain': {
        const d = this.#drains.get(m.revision);
        if (d !== undefined) this.#drainReport(d, slot.index, m.report);
        break;
      }
      case 'failure':
        this.#o.health.reportFailure(m.id, m.reason);
        break;
      case 'tlsReloaded':
        this.#tlsWaiters.shift()?.(m);
        break;
      default:
        break;
    }
  }
}

/** One report for the pool: completed only when every worker's drain completed. */
function merge(reports: DrainReport[], revision: number, table: RouteTable): DrainReport {
  const first = reports[0];
  return {
    color: first?.color ?? (table.live?.color === 'blue' ? 'green' : 'blue'),
    revision,
    durationMs: Math.max(0, ...reports.map((r) => r.durationMs)),
    completed: reports.length > 0 && reports.every((r) => r.completed),
    closedRequests: reports.reduce((n, r) => n + r.closedRequests, 0),
    closedWebSockets: reports.reduce((n, r) => n + r.closedWebSockets, 0),
  };
}

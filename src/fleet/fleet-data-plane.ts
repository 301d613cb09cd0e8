/**
 * The data plane of a fleet, as the controller sees it: the route table lives in etcd, routers
 * on any hosts register under their leases and write back the revision they applied.
 *
 * `swap` is one etcd transaction (compare: the key is as this controller last wrote it; issue 11
 * adds "and my leadership key still exists"), so a write is all or nothing and is easy to fence.
 * If etcd cannot commit it (no quorum), the swap throws CUTOVER_ERR_FLEET_UNAVAILABLE and no
 * router saw the table. `applied` settles when every router registered at publish time (minus
 * those whose lease expired meanwhile: they left the set) acknowledged it, or at fleet.ackTimeout,
 * naming who did not.
 *
 * Owns: the controller's etcd view of routers, acks and drains. Must never: wait without a bound,
 * or count a router as having applied a revision it did not write back.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { CutoverError, isCutoverError } from '../lib/errors.ts';
import type { Color } from '../environments/types.ts';
import { RequestStats, type ListenerName } from '../router/request-stats.ts';
import { EMPTY_ROUTE_TABLE, type RouteTable } from '../router/route-table.ts';
import type { Logger } from '../lib/logger.ts';
import type { ApplyReport, DataPlane, DrainReport, RequestRecord, RouterInfo, SwapResult } from '../router/data-plane.ts';
import { decodeRecord, laneOf } from '../router/control-protocol.ts';
import type { RecordsBody } from './records-push.ts';
import { fleetUnavailable, openEtcd } from './etcd.ts';
import { DEFAULT_SERVICE, fleetKeys, type FleetKeys, type RouterAck, type RouterRegistration } from './keys.ts';
import type { FleetConfig } from './schema.ts';

/** Route tables remembered by revision, to say what a lagging router still routes to. */
const TABLES_KEPT = 64;

interface Waiter {
  revision: number;
  publishedAt: number;
  expected: Set<string>;
  acked: Map<string, number>;
  left: string[];
  resolve: (r: ApplyReport) => void;
  timer: NodeJS.Timeout;
}

interface DrainWaiter { revision: number; color: Color; expected: Set<string>; reports: Map<string, DrainReport>; startedAt: number; resolve: (d: DrainReport) => void; timer: NodeJS.Timeout }

export interface FleetEvents {
  joined: [reg: RouterRegistration];
  left: [id: string];
}

export class FleetDataPlane extends EventEmitter<FleetEvents> implements DataPlane {
  /** Fed by the routers' request records (POST /api/v1/fleet/records, fleet/records-push.ts). */
  readonly stats = new RequestStats();
  readonly #onRequest: (r: RequestRecord) => void;
  readonly #inFlight = new Map<string, [number, number, number, number]>();
  readonly #rejections = new Map<string, Record<string, number>>();
  readonly #fleet: FleetConfig;
  readonly #keys: FleetKeys;
  readonly #service = DEFAULT_SERVICE;
  readonly #log: Logger;
  readonly #addresses: ReturnType<DataPlane['addresses']>;
  readonly #drainTimeoutMs: number;
  readonly #client: Etcd3;
  /** Fleet of controllers: the fenced route write (store/etcd-store.ts publish), else a plain compare on the key. */
  #publish: ((key: string, modRevision: string, value: string) => Promise<{ succeeded: boolean; revision: string }>) | null = null;
  #watcher: Watcher | null = null;
  #table: RouteTable = EMPTY_ROUTE_TABLE;
  #modRevision = '0';
  readonly #tables = new Map<number, RouteTable>();
  readonly #routers = new Map<string, RouterRegistration>();
  readonly #acks = new Map<string, RouterAck & { heardAt: number; ackMs: number | null }>();
  readonly #waiters = new Set<Waiter>();
  readonly #drainWaiters = new Set<DrainWaiter>();
  /** When each revision was published (performance.now()), for per-router ack latency. */
  readonly #publishedAt = new Map<number, number>();

  constructor(o: { app: string; fleet: FleetConfig; logger: Logger; addresses: ReturnType<DataPlane['addresses']>; drainTimeoutMs: number; onRequest?: (r: RequestRecord) => void; client?: Etcd3 }) {
    super();
    this.#onRequest = o.onRequest ?? (() => {});
    this.#fleet = o.fleet;
    this.#keys = fleetKeys(o.fleet.etcd.prefix, o.app);
    this.#log = o.logger.child({ component: 'fleet' });
    this.#addresses = o.addresses;
    this.#drainTimeoutMs = o.drainTimeoutMs;
    this.#client = o.client ?? openEtcd(o.fleet);
    this.#ownClient = o.client === undefined;
  }

  readonly #ownClient: boolean;

  /**
   * Route writes go through `publish` (issue 11): one transaction fenced by the leadership, carrying
   * the state commits still pending, so a swap and the roles it implies land together or not at all.
   */
  setPublisher(publish: (key: string, modRevision: string, value: string) => Promise<{ succeeded: boolean; revision: string }>): void {
    this.#publish = publish;
  }

  /** Read the route table again (a controller taking the lead: its next write compares against the newest). */
  async resync(): Promise<void> {
    const key = this.#keys.routes(this.#service);
    let res;
    try {
      res = await this.#client.get(key).exec();
    } catch (err) {
      throw fleetUnavailable('cannot read the route table', err, this.#fleet.etcd.endpoints);
    }
    const kv = res.kvs[0];
    if (kv) this.#onPut(kv, true);
  }

  /** Read the table, the routers and their acks, then follow every change from that etcd revision. */
  async attach(): Promise<void> {
    let res;
    try {
      res = await this.#client.getAll().prefix(this.#keys.root).exec();
    } catch (err) {
      throw fleetUnavailable('cannot read the fleet state', err, this.#fleet.etcd.endpoints);
    }
    for (const kv of res.kvs) this.#onPut(kv, true);
    this.#watcher = await this.#client.watch().prefix(this.#keys.root).startRevision(String(Number(res.header.revision) + 1)).create();
    this.#watcher.on('put', (kv) => this.#onPut(kv, false));
    this.#watcher.on('delete', (kv) => this.#onDelete(kv));
    this.#watcher.on('disconnected', (err) => this.#log.warn({ err: err.message }, 'lost the etcd watch; it resumes where it stopped when etcd answers'));
    this.#watcher.on('connected', () => this.#log.debug('etcd watch connected'));
    this.#log.info({ revision: this.#table.revision, routers: [...this.#routers.keys()] }, 'attached to the fleet');
  }

  table(): RouteTable {
    return this.#table;
  }

  addresses(): ReturnType<DataPlane['addresses']> {
    return this.#addresses;
  }

  /** Requests and WebSockets in flight on every registered router (as of its last push). */
  inFlight(listener: ListenerName, color?: Color): number {
    let n = 0;
    for (const [id, lanes] of this.#inFlight) {
      if (!this.#routers.has(id)) continue;
      n += color !== undefined ? lanes[laneOf(listener, color)] : lanes[laneOf(listener, 'blue')] + lanes[laneOf(listener, 'green')];
    }
    return n;
  }

  /** Mirroring results are not gathered from fleet routers (docs/fleet.md, limits): a shadow gate sees none. */
  mirrorReport(_id: string): null {
    return null;
  }

  /** Requests refused before reaching any colour, summed over the routers (as of their last push). */
  rejections(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, r] of this.#rejections) {
      if (!this.#routers.has(id)) continue;
      for (const [status, n] of Object.entries(r)) out[status] = (out[status] ?? 0) + n;
    }
    return out;
  }

  /** A router's pushed request records: into the stats and the request hooks (analysis, metrics). */
  ingest(body: RecordsBody): void {
    this.#inFlight.set(body.router, body.inFlight);
    this.#rejections.set(body.router, body.rejections);
    for (const w of body.records) {
      const r = decodeRecord(w);
      this.stats.record(r.listener, r.color, r.status, r.durationMs, r.error, r.at);
      try { this.#onRequest(r); } catch { /* a metrics hook must not break the relay */ }
    }
  }

  async swap(next: RouteTable): Promise<SwapResult> {
    const key = this.#keys.routes(this.#service);
    const publishedAt = performance.now();
    // Before the write: the watch may deliver our own put before the transaction's answer.
    const prev = this.#table;
    let r;
    try {
      // One transaction: unchanged since this controller last wrote it, and (several controllers) its leadership still holds.
      r = this.#publish
        ? await this.#publish(key, this.#modRevision, JSON.stringify(next))
        : await this.#client.if(key, 'Mod', '==', this.#modRevision).then(this.#client.put(key).value(JSON.stringify(next))).commit().then((x) => ({ succeeded: x.succeeded, revision: x.header.revision }));
    } catch (err) {
      if (isCutoverError(err)) throw err;
      throw fleetUnavailable(`route revision ${next.revision} was not published`, err, this.#fleet.etcd.endpoints);
    }
    if (!r.succeeded) {
      throw new CutoverError('CUTOVER_ERR_CONFLICT', `the route table in etcd (${key}) was changed by someone else since this controller wrote it (another controller?); nothing was published`, { details: { key } });
    }
    this.#modRevision = r.revision;
    this.#remember(next);
    this.#publishedAt.set(next.revision, publishedAt);
    const expected = new Set(this.#routers.keys());
    const applied = new Promise<ApplyReport>((resolve) => {
      const w: Waiter = {
        revision: next.revision, publishedAt, expected, acked: new Map(), left: [], resolve,
        timer: setTimeout(() => this.#finish(w), this.#fleet.ackTimeout),
      };
      w.timer.unref();
      this.#waiters.add(w);
      this.#check(w);
    });
    let drain: Promise<DrainReport> | null = null;
    const from = prev.live?.color ?? null;
    if (from !== null && from !== (next.live?.color ?? null)) {
      drain = new Promise<DrainReport>((resolve) => {
        const d: DrainWaiter = {
          revision: next.revision, color: from, expected: new Set(expected), reports: new Map(), startedAt: performance.now(), resolve,
          timer: setTimeout(() => this.#finishDrain(d), this.#drainTimeoutMs + this.#fleet.ackTimeout),
        };
        d.timer.unref();
        this.#drainWaiters.add(d);
      });
    }
    return { revision: next.revision, drain, applied };
  }

  routers(): RouterInfo[] {
    const out: RouterInfo[] = [];
    for (const [id, reg] of this.#routers) {
      const ack = this.#acks.get(id);
      const revision = ack?.revision ?? 0;
      const t = this.#tables.get(revision) ?? null;
      const route = (x: RouteTable['live'] | undefined) => (x ? { color: x.color, version: x.version } : null);
      out.push({
        id, pid: reg.pid, version: reg.version, revision,
        live: route(t?.live), preview: route(t?.preview),
        stale: revision < this.#table.revision,
        lastSeen: ack?.heardAt ?? null, ackMs: ack?.ackMs ?? null,
      });
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  async close(): Promise<void> {
    for (const w of this.#waiters) this.#finish(w);
    for (const d of this.#drainWaiters) this.#finishDrain(d);
    await this.#watcher?.cancel().catch(() => {});
    if (this.#ownClient) this.#client.close();
  }

  #remember(t: RouteTable): void {
    this.#table = t;
    this.#tables.set(t.revision, t);
    if (this.#tables.size > TABLES_KEPT) this.#tables.delete(this.#tables.keys().next().value as number);
  }

  #onPut(kv: IKeyValue, initial: boolean): void {
    const key = kv.key.toString();
    const rest = key.slice(this.#keys.root.length);
    let value: unknown;
    try {
      value = JSON.parse(kv.value.toString());
    } catch {
      this.#log.warn({ key }, 'ignoring a fleet key that is not JSON');
      return;
    }
    if (key === this.#keys.routes(this.#service)) {
      const t = value as RouteTable;
      this.#modRevision = kv.mod_revision;
      if (t.revision >= this.#table.revision) this.#remember(t);
      return;
    }
    if (rest.startsWith('routers/')) {
      const reg = value as RouterRegistration;
      const isNew = !this.#routers.has(reg.id);
      this.#routers.set(reg.id, reg);
      if (isNew && !initial) this.emit('joined', reg);
      return;
    }
    if (key.startsWith(this.#keys.acksPrefix(this.#service))) {
      const id = key.slice(this.#keys.acksPrefix(this.#service).length);
      const ack = value as RouterAck;
      const prev = this.#acks.get(id);
      const published = this.#publishedAt.get(ack.revision);
      const ackMs = prev && prev.revision === ack.revision ? prev.ackMs : published !== undefined ? performance.now() - published : null;
      this.#acks.set(id, { ...ack, heardAt: Date.now(), ackMs });
      for (const w of this.#waiters) {
        if (ack.revision >= w.revision && w.expected.has(id) && !w.acked.has(id)) w.acked.set(id, performance.now() - w.publishedAt);
        this.#check(w);
      }
      return;
    }
    if (key.startsWith(this.#keys.drainsPrefix(this.#service))) {
      const id = key.slice(this.#keys.drainsPrefix(this.#service).length);
      const report = value as DrainReport;
      for (const d of this.#drainWaiters) {
        if (report.revision !== d.revision || !d.expected.has(id)) continue;
        d.reports.set(id, report);
        if ([...d.expected].every((x) => d.reports.has(x))) this.#finishDrain(d);
      }
    }
  }

  #onDelete(kv: IKeyValue): void {
    const key = kv.key.toString();
    if (!key.startsWith(this.#keys.routersPrefix)) {
      if (key.startsWith(this.#keys.acksPrefix(this.#service))) this.#acks.delete(key.slice(this.#keys.acksPrefix(this.#service).length));
      return;
    }
    const id = key.slice(this.#keys.routersPrefix.length);
    if (!this.#routers.delete(id)) return;
    this.#acks.delete(id);
    this.#log.warn({ router: id }, 'router left the fleet (its lease expired or it stopped)');
    this.emit('left', id);
    // It left the set: nobody waits for it any more.
    for (const w of this.#waiters) {
      if (w.expected.delete(id) && !w.acked.has(id)) w.left.push(id);
      this.#check(w);
    }
    for (const d of this.#drainWaiters) {
      d.expected.delete(id);
      if ([...d.expected].every((x) => d.reports.has(x))) this.#finishDrain(d);
    }
  }

  #check(w: Waiter): void {
    if ([...w.expected].every((id) => w.acked.has(id))) this.#finish(w);
  }

  #finish(w: Waiter): void {
    if (!this.#waiters.delete(w)) return;
    clearTimeout(w.timer);
    const acked = [...w.acked].filter(([id]) => w.expected.has(id));
    const missing = [...w.expected].filter((id) => !w.acked.has(id));
    const ms = missing.length > 0 ? performance.now() - w.publishedAt : acked.reduce((m, [, a]) => Math.max(m, a), 0);
    w.resolve({ revision: w.revision, acknowledged: acked.map(([id]) => id), missing, ms, ackMs: Object.fromEntries(acked), ...(w.left.length > 0 ? { left: w.left } : {}) });
  }

  #finishDrain(d: DrainWaiter): void {
    if (!this.#drainWaiters.delete(d)) return;
    clearTimeout(d.timer);
    const reports = [...d.reports.values()];
    const heardAll = [...d.expected].every((id) => d.reports.has(id));
    d.resolve({
      color: d.color, revision: d.revision,
      durationMs: reports.reduce((m, r) => Math.max(m, r.durationMs), 0) || performance.now() - d.startedAt,
      completed: heardAll && reports.every((r) => r.completed),
      closedRequests: reports.reduce((n, r) => n + r.closedRequests, 0),
      closedWebSockets: reports.reduce((n, r) => n + r.closedWebSockets, 0),
    });
  }
}

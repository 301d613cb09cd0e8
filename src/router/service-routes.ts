/**
 * One service's share of the router: its route table snapshot, the routes requests bind to, its
 * lanes (in-flight bookkeeping and drains), upstream pools, health view and request stats. The
 * router owns the listeners and picks the service of each request (service-map.ts); everything
 * after that happens here, so a swap of one service never touches another's requests, pools or
 * drains.
 *
 * Owns: the current snapshot of one service and its swap. Must never: choose colours (the
 * service's controller does), or touch another service's lanes.
 */
import type { Color } from '../environments/types.ts';
import type { HealthView } from '../health/types.ts';
import { AddressSet } from '../lib/cidr.ts';
import type { Logger } from '../lib/logger.ts';
import type { DrainReport, RequestRecord } from './data-plane.ts';
import { Mirror, type MirrorReport } from './mirror.ts';
import type { Color as SplitColor } from '../environments/types.ts';
import type { ProxyContext } from './http-exchange.ts';
import { Lane } from './lanes.ts';
import { RequestStats, type ListenerName } from './request-stats.ts';
import { EMPTY_ROUTE_TABLE, freezeTable, type RouteTable } from './route-table.ts';
import { type BoundRoute, type PoolSettings, type Upstream, UpstreamSet } from './upstreams.ts';

export function laneIndex(listener: ListenerName, color: Color): number {
  return (listener === 'live' ? 0 : 2) + (color === 'blue' ? 0 : 1);
}

export interface ServiceRoutesOptions {
  name: string;
  health: HealthView;
  onRequest?: (r: RequestRecord) => void;
  drainTimeoutMs: number;
  pool: PoolSettings;
  trustedProxies: readonly string[];
  /** Scheme of the live listener when the request's own socket does not say (plain or TLS). */
  liveProto: 'http' | 'https';
  maxBodyBytes: number;
  logger: Logger;
}

export class ServiceRoutes {
  readonly name: string;
  readonly stats = new RequestStats();
  readonly health: HealthView;
  readonly ctx: ProxyContext;
  readonly upstreams: UpstreamSet;
  readonly lanes: readonly Lane[] = [new Lane('live', 'blue'), new Lane('live', 'green'), new Lane('preview', 'blue'), new Lane('preview', 'green')];
  #table: RouteTable = EMPTY_ROUTE_TABLE;
  live: BoundRoute | null = null;
  preview: BoundRoute | null = null;
  /** The gradual switch in force: its colour's bound route, share and stickiness; null: none. */
  split: { route: BoundRoute; share: number; stickiness: NonNullable<RouteTable['split']>['stickiness'] } | null = null;
  /** Mirroring is on (the table has a mirror spec and a preview colour to copy to). */
  mirrorOn = false;
  readonly mirror: Mirror;
  readonly #drainTimeoutMs: number;
  readonly #logger: Logger;
  /** The data-plane callback for `onRequest`; replaceable so plugins can attach after start. */
  readonly onRequest: ((r: RequestRecord) => void) | undefined;

  constructor(o: ServiceRoutesOptions) {
    this.name = o.name;
    this.health = o.health;
    this.#drainTimeoutMs = o.drainTimeoutMs;
    this.#logger = o.logger;
    this.onRequest = o.onRequest;
    this.upstreams = new UpstreamSet(o.pool, o.logger);
    const logger = o.logger;
    const health = o.health;
    this.mirror = new Mirror(health);
    this.ctx = {
      mirror: this.mirror,
      health,
      stats: this.stats,
      upstreams: this.upstreams,
      onRequest: o.onRequest,
      trustedProxies: new AddressSet(o.trustedProxies),
      proto: { live: o.liveProto, preview: 'http' },
      maxBodyBytes: o.maxBodyBytes,
      capture: null,
      reportFailure(u: Upstream, reason: string): void {
        // Log the first failure of a run, not every request that meets a dead instance.
        if (u.failures++ === 0) logger.warn({ instance: u.id, reason }, 'upstream connection failed; reported to health');
        health.reportFailure(u.id, reason);
      },
    };
  }

  table(): RouteTable {
    return this.#table;
  }

  lane(listener: ListenerName, color: Color): Lane {
    return this.lanes[laneIndex(listener, color)];
  }

  /**
   * One synchronous swap: requests that arrive from now on use `next`; requests in flight keep
   * the snapshot they arrived under. Returns the drain of the colour that left the live listener.
   */
  swap(next: RouteTable): { revision: number; drain: Promise<DrainReport> | null } {
    const table = Object.isFrozen(next) ? next : freezeTable(next);
    const prev = this.#table;
    const bound = this.upstreams.bind(table);
    this.#table = table;
    this.live = bound.live;
    this.preview = bound.preview;
    const split = table.split ?? null;
    this.split = split !== null && bound.split !== null && split.share > 0 ? { route: bound.split, share: split.share, stickiness: split.stickiness } : null;
    const mirror = table.mirror ?? null;
    this.mirror.configure(mirror, bound.preview);
    this.mirrorOn = mirror !== null && bound.preview !== null;

    // Colours that took live-listener traffic before and after (the live colour, and a split's).
    const before = liveColors(prev);
    const after = liveColors(table);
    // Instant rollback: a colour being drained takes live traffic again; its connections must stay.
    for (const c of after) this.lane('live', c).cancelDrain();
    // At most one colour leaves the live listener per swap (there are two colours).
    const from = before.find((c) => !after.includes(c)) ?? null;
    let drain: Promise<DrainReport> | null = null;
    if (from !== null) {
      const lane = this.lane('live', from);
      this.#logger.info({ color: from, revision: table.revision, inFlight: lane.count }, 'draining the colour that left the live listener');
      drain = lane.startDrain(table.revision, this.#drainTimeoutMs).then((r) => {
        this.#logger.info({ ...r }, r.completed ? 'drain completed' : 'drain timed out; remaining connections closed');
        return r;
      });
    }
    this.#logger.info(
      {
        revision: table.revision, live: table.live && { color: table.live.color, version: table.live.version }, preview: table.preview && { color: table.preview.color, version: table.preview.version },
        ...(split ? { split: { color: split.route.color, share: split.share, stickiness: split.stickiness.kind } } : {}), ...(mirror ? { mirror: { id: mirror.id, sample: mirror.sample } } : {}),
      },
      'route table swapped',
    );
    return { revision: table.revision, drain };
  }

  /** Requests plus WebSockets in flight on a listener (optionally only those bound to `color`). */
  inFlight(listener: ListenerName, color?: Color): number {
    if (color !== undefined) return this.lane(listener, color).count;
    return this.lane(listener, 'blue').count + this.lane(listener, 'green').count;
  }

  /** Counts of a mirroring run (`table.mirror.id`); a plain object (it may cross a process boundary). */
  mirrorReport(id: string): MirrorReport | null {
    return this.mirror.report(id);
  }

  /** Shutdown: pending drains end now, everything in flight is cut. */
  forceEnd(reason: string): void {
    for (const lane of this.lanes) lane.forceEnd(reason);
  }
}

/** Colours a table sends live-listener traffic to: the live colour, and a split's colour. */
function liveColors(t: RouteTable): SplitColor[] {
  const out: SplitColor[] = [];
  if (t.live !== null) out.push(t.live.color);
  if (t.split && t.split.share > 0 && !out.includes(t.split.route.color)) out.push(t.split.route.color);
  return out;
}

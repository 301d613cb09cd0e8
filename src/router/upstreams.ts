/**
 * Upstream targets and their connection pools. One `Upstream` per target address (instance id +
 * host + port), shared by every route snapshot that names it, so a swap never reconnects to an
 * instance that stays routed. Pools of targets the current table no longer names are closed once
 * nothing in flight uses them.
 *
 * Owns: connection pools (upstream-pool.ts), per-target in-flight counts, load balancing among a colour's targets.
 * Must never: decide which colour is live (that is the route table), or pick an unhealthy target.
 */
import type { Color } from '../environments/types.ts';
import type { HealthView } from '../health/types.ts';
import type { Logger } from '../lib/logger.ts';
import type { ColorRoute, RouteTable, RouteTarget } from './route-table.ts';
import { UpstreamPool } from './upstream-pool.ts';

/** Idle upstream keep-alive: below Node's default server keepAliveTimeout (5 s), so we close first. */
export const UPSTREAM_KEEP_ALIVE_MS = 4_000;

export interface PoolSettings {
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /** Largest upstream response head accepted (then 502): `router.maxHeaderSize`. */
  maxHeaderBytes: number;
}

export class Upstream {
  readonly key: string;
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly pool: UpstreamPool;
  /** Requests currently using this target (WebSocket tunnels use their own sockets, not the pool). */
  inFlight = 0;
  /** The current table no longer names this target: close the pool when inFlight reaches 0. */
  retired = false;
  closed = false;
  /** Consecutive connection failures; logs only on the first of a run, not per request. */
  failures = 0;

  /** Answers followed by extra bytes (see UpstreamPoolOptions.onExtraBytes); logged on the first and then once a minute. */
  extraBytes = 0;
  #extraLoggedAt = 0;

  constructor(target: RouteTarget, settings: PoolSettings, logger?: Logger) {
    this.key = upstreamKey(target);
    this.id = target.id;
    this.host = target.host;
    this.port = target.port;
    this.pool = new UpstreamPool({
      host: target.host,
      port: target.port,
      connectTimeoutMs: settings.connectTimeoutMs,
      // Time to the response head and the longest pause between body chunks (nginx's proxy_read_timeout).
      responseTimeoutMs: settings.responseTimeoutMs,
      keepAliveMs: UPSTREAM_KEEP_ALIVE_MS,
      maxHeaderBytes: settings.maxHeaderBytes,
      onExtraBytes: (detail) => {
        this.extraBytes++;
        const now = Date.now();
        if (logger === undefined || now - this.#extraLoggedAt < EXTRA_BYTES_LOG_EVERY_MS) return;
        this.#extraLoggedAt = now;
        logger.warn({ instance: this.id, detail, times: this.extraBytes }, 'upstream sent more than its answer (e.g. a body longer than its Content-Length); the answer was delivered, the extra bytes dropped and the connection closed');
      },
    });
  }
}

/** A misbehaving upstream is logged at most once a minute, not per request. */
const EXTRA_BYTES_LOG_EVERY_MS = 60_000;

export function upstreamKey(t: RouteTarget): string {
  return `${t.id}@${t.host}:${t.port}`;
}

/** A colour route as bound by requests: the snapshot's route plus its resolved upstreams. */
export class BoundRoute {
  readonly color: Color;
  readonly version: string;
  readonly upstreams: readonly Upstream[];
  /** Rotating start for tie-breaks among equally loaded targets (round robin at low load). */
  #next = 0;

  constructor(route: ColorRoute, upstreams: Upstream[]) {
    this.color = route.color;
    this.version = route.version;
    this.upstreams = upstreams;
  }

  /** Least-in-flight among healthy, open targets, excluding `exclude`; null when none qualifies. */
  pick(health: HealthView, exclude: Upstream | null): Upstream | null {
    const list = this.upstreams;
    const n = list.length;
    if (n === 0) return null;
    const start = this.#next;
    this.#next = start + 1 >= n ? 0 : start + 1;
    let best: Upstream | null = null;
    for (let i = 0; i < n; i++) {
      const u = list[(start + i) % n];
      if (u === exclude || u.closed || !health.isHealthy(u.id)) continue;
      if (best === null || u.inFlight < best.inFlight) best = u;
    }
    return best;
  }
}

/** All upstreams the router knows, keyed by target address. */
export class UpstreamSet {
  readonly #byKey = new Map<string, Upstream>();
  readonly #settings: PoolSettings;
  readonly #logger: Logger;

  constructor(settings: PoolSettings, logger: Logger) {
    this.#settings = settings;
    this.#logger = logger;
  }

  /** Resolves a table's routes to upstreams (creating pools lazily), then retires the rest. */
  bind(table: RouteTable): { live: BoundRoute | null; preview: BoundRoute | null; split: BoundRoute | null } {
    const used = new Set<string>();
    const bindRoute = (r: ColorRoute | null): BoundRoute | null => {
      if (r === null) return null;
      const ups = r.targets.map((t) => {
        const key = upstreamKey(t);
        used.add(key);
        let u = this.#byKey.get(key);
        if (u === undefined) {
          u = new Upstream(t, this.#settings, this.#logger);
          this.#byKey.set(key, u);
        }
        u.retired = false; // named again before its pool closed: keep it
        return u;
      });
      return new BoundRoute(r, ups);
    };
    const bound = { live: bindRoute(table.live), preview: bindRoute(table.preview), split: bindRoute(table.split?.route ?? null) };
    for (const u of this.#byKey.values()) {
      if (used.has(u.key)) continue;
      u.retired = true;
      if (u.inFlight === 0) this.#close(u);
    }
    return bound;
  }

  acquire(u: Upstream): void {
    u.inFlight++;
  }

  release(u: Upstream): void {
    if (--u.inFlight === 0 && u.retired && !u.closed) this.#close(u);
  }

  #close(u: Upstream): void {
    u.closed = true;
    this.#byKey.delete(u.key);
    this.#logger.debug({ instance: u.id, upstream: u.key }, 'upstream pool closed (no longer routed)');
    u.pool.close().catch(() => u.pool.destroy().catch(() => {}));
  }

  /** Shutdown: destroy every pool (in-flight requests have been aborted by the caller). */
  async destroyAll(): Promise<void> {
    const all = [...this.#byKey.values()];
    this.#byKey.clear();
    await Promise.all(all.map((u) => { u.closed = true; return u.pool.destroy().catch(() => {}); }));
  }

  size(): number {
    return this.#byKey.size;
  }
}

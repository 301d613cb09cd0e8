/**
 * The router (data plane): an HTTP/1.1 + WebSocket reverse proxy with two listeners, `live` and
 * `preview`, each sending traffic to the colour the current route table names for it.
 *
 * A request binds to the route snapshot it arrived under and finishes there (DESIGN promise 1);
 * `swap` is one synchronous reference swap (promise 3) and starts the drain of the colour that
 * left the live listener. The router never chooses colours: the controller does, and the router
 * answers 503 rather than send traffic to a colour with no healthy instance (promise 2).
 *
 * Owns: listeners, the current snapshot, lanes and drains, upstream pools, request stats.
 * Must never: log per request, buffer whole bodies, touch the live colour's connections in a
 * drain, or add headers of its own beyond X-Forwarded-*.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_RESPONSE_TIMEOUT_MS,
} from '../config/defaults.ts';
import type { Color } from '../environments/types.ts';
import type { HealthView } from '../health/types.ts';
import { silentLogger, type Logger } from '../telemetry/logger.ts';
import { HttpExchange, type ProxyContext, type RequestRecord } from './http-exchange.ts';
import { Lane, type DrainReport } from './lanes.ts';
import { RequestStats, type ListenerName } from './request-stats.ts';
import { EMPTY_ROUTE_TABLE, freezeTable, type RouteTable } from './route-table.ts';
import { failureBody } from './upstream-errors.ts';
import { type BoundRoute, type Upstream, UpstreamSet } from './upstreams.ts';
import { WebSocketTunnel, writeRawFailure } from './websocket-tunnel.ts';

export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_RESPONSE_TIMEOUT_MS };
export type { DrainReport, ListenerName, RequestRecord };
export { RequestStats };

/**
 * Client keep-alive idle time: longer than the 60 s idle timeouts of common load balancers in
 * front of us, so they (not we) close idle connections and never race a request into a closing
 * socket.
 */
export const CLIENT_KEEP_ALIVE_TIMEOUT_MS = 65_000;

export interface RouterOptions {
  listen: { host: string; port: number };
  preview: { host: string; port: number } | null;
  drainTimeoutMs: number;
  connectTimeoutMs?: number;
  /** Time to the upstream's response head, and the longest pause between body chunks. */
  responseTimeoutMs?: number;
  health: HealthView;
  logger?: Logger;
  /** Called once per finished proxied request (metrics/analysis hook); must be cheap. */
  onRequest?: (r: RequestRecord) => void;
}

interface Listener {
  name: ListenerName;
  server: Server;
}

function laneIndex(listener: ListenerName, color: Color): number {
  return (listener === 'live' ? 0 : 2) + (color === 'blue' ? 0 : 1);
}

export class Router {
  readonly stats = new RequestStats();
  readonly #opts: RouterOptions;
  readonly #logger: Logger;
  readonly #ctx: ProxyContext;
  readonly #upstreams: UpstreamSet;
  readonly #timeouts: { connectTimeoutMs: number; responseTimeoutMs: number };
  readonly #lanes: readonly Lane[] = [new Lane('live', 'blue'), new Lane('live', 'green'), new Lane('preview', 'blue'), new Lane('preview', 'green')];
  #table: RouteTable = EMPTY_ROUTE_TABLE;
  #live: BoundRoute | null = null;
  #preview: BoundRoute | null = null;
  #listeners: Listener[] = [];
  #closed = false;

  constructor(opts: RouterOptions) {
    this.#opts = opts;
    this.#logger = (opts.logger ?? silentLogger).child({ component: 'router' });
    this.#timeouts = {
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      responseTimeoutMs: opts.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT_MS,
    };
    this.#upstreams = new UpstreamSet(this.#timeouts, this.#logger);
    const logger = this.#logger;
    const health = opts.health;
    this.#ctx = {
      health,
      stats: this.stats,
      upstreams: this.#upstreams,
      onRequest: opts.onRequest,
      reportFailure(u: Upstream, reason: string): void {
        // Log the first failure of a run, not every request that meets a dead instance.
        if (u.failures++ === 0) logger.warn({ instance: u.id, reason }, 'upstream connection failed; reported to health');
        health.reportFailure(u.id, reason);
      },
    };
  }

  /** Binds the live listener and, when configured, the preview listener. */
  async start(): Promise<void> {
    if (this.#listeners.length > 0) return;
    const specs: [ListenerName, { host: string; port: number }][] = [['live', this.#opts.listen]];
    if (this.#opts.preview !== null) specs.push(['preview', this.#opts.preview]);
    for (const [name, addr] of specs) {
      const server = createServer();
      server.keepAliveTimeout = CLIENT_KEEP_ALIVE_TIMEOUT_MS;
      // One closure per listener, not per request.
      server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(name, req, res));
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(name, req, socket, head));
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
        // Malformed or too-slow requests never reach a route: answer like Node would, quietly.
        const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
        if (socket.writable && err.code !== 'ECONNRESET') socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
        else socket.destroy();
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(addr.port, addr.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      this.#listeners.push({ name, server });
    }
    this.#logger.info({ addresses: this.addresses() }, 'router listening');
  }

  addresses(): { live: { host: string; port: number }; preview: { host: string; port: number } | null } {
    const of = (name: ListenerName, fallback: { host: string; port: number } | null) => {
      const l = this.#listeners.find((x) => x.name === name);
      const a = l?.server.address() as AddressInfo | null | undefined;
      return a ? { host: a.address, port: a.port } : fallback;
    };
    return { live: of('live', this.#opts.listen) ?? this.#opts.listen, preview: of('preview', this.#opts.preview) };
  }

  table(): RouteTable {
    return this.#table;
  }

  /**
   * One synchronous swap: requests that arrive from now on use `next`; requests in flight keep
   * the snapshot they arrived under. Returns the drain of the colour that left the live listener.
   */
  swap(next: RouteTable): { revision: number; drain: Promise<DrainReport> | null } {
    const table = Object.isFrozen(next) ? next : freezeTable(next);
    const prev = this.#table;
    const bound = this.#upstreams.bind(table);
    this.#table = table;
    this.#live = bound.live;
    this.#preview = bound.preview;

    const from = prev.live?.color ?? null;
    const to = table.live?.color ?? null;
    // Instant rollback: the colour being drained is live again; its connections must stay.
    if (to !== null) this.#lanes[laneIndex('live', to)].cancelDrain();
    let drain: Promise<DrainReport> | null = null;
    if (from !== null && from !== to) {
      const lane = this.#lanes[laneIndex('live', from)];
      this.#logger.info({ color: from, revision: table.revision, inFlight: lane.count }, 'draining the colour that left the live listener');
      drain = lane.startDrain(table.revision, this.#opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS).then((r) => {
        this.#logger.info({ ...r }, r.completed ? 'drain completed' : 'drain timed out; remaining connections closed');
        return r;
      });
    }
    this.#logger.info(
      { revision: table.revision, live: table.live && { color: table.live.color, version: table.live.version }, preview: table.preview && { color: table.preview.color, version: table.preview.version } },
      'route table swapped',
    );
    return { revision: table.revision, drain };
  }

  /** Requests plus WebSockets in flight on a listener (optionally only those bound to `color`). */
  inFlight(listener: ListenerName, color?: Color): number {
    if (color !== undefined) return this.#lanes[laneIndex(listener, color)].count;
    return this.#lanes[laneIndex(listener, 'blue')].count + this.#lanes[laneIndex(listener, 'green')].count;
  }

  /** Stops listening, closes every connection (in flight or idle) and every upstream pool. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closing = this.#listeners.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve())));
    // Pending drains resolve as not completed, with what was cut.
    for (const lane of this.#lanes) lane.forceEnd('router closing');
    for (const l of this.#listeners) l.server.closeAllConnections();
    await Promise.all(closing);
    await this.#upstreams.destroyAll();
    this.#listeners = [];
    this.#logger.info('router closed');
  }

  // ── hot path ──

  #onRequest(listener: ListenerName, req: IncomingMessage, res: ServerResponse): void {
    const startedAt = performance.now();
    // The binding moment: this request belongs to the snapshot current right now.
    const route = listener === 'live' ? this.#live : this.#preview;
    if (route === null) {
      answer(res, 503, listener === 'live' ? 'no release is live yet' : 'no release is in preview', req);
      return;
    }
    const first = route.pick(this.#opts.health, null);
    if (first === null) {
      this.#noHealthy(listener, route, req, res, startedAt);
      return;
    }
    new HttpExchange(this.#ctx, listener, route, req, res, startedAt).start(this.#lanes[laneIndex(listener, route.color)], first);
  }

  #onUpgrade(listener: ListenerName, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const startedAt = performance.now();
    const route = listener === 'live' ? this.#live : this.#preview;
    socket.on('error', () => socket.destroy()); // before the tunnel owns it
    if (route === null) {
      writeRawFailure(socket, 503, listener === 'live' ? 'no release is live yet' : 'no release is in preview');
      return;
    }
    const first = route.pick(this.#opts.health, null);
    if (first === null) {
      this.#record(listener, route, req.method ?? 'GET', 503, performance.now() - startedAt);
      writeRawFailure(socket, 503, `no healthy instance of ${route.color}`);
      return;
    }
    new WebSocketTunnel(this.#ctx, this.#timeouts, listener, route, req, socket, head, startedAt).start(this.#lanes[laneIndex(listener, route.color)], first);
  }

  #noHealthy(listener: ListenerName, route: BoundRoute, req: IncomingMessage, res: ServerResponse, startedAt: number): void {
    answer(res, 503, `no healthy instance of ${route.color}`, req);
    this.#record(listener, route, req.method ?? 'GET', 503, performance.now() - startedAt);
  }

  #record(listener: ListenerName, route: BoundRoute, method: string, status: number, durationMs: number): void {
    this.stats.record(listener, route.color, status, durationMs, 'no-healthy');
    const hook = this.#opts.onRequest;
    if (hook !== undefined) {
      try {
        hook({ listener, color: route.color, version: route.version, method, status, durationMs, error: 'no-healthy' });
      } catch { /* a metrics hook must not break the data plane */ }
    }
  }
}

/** A short plain-text answer made by the router itself. */
function answer(res: ServerResponse, status: number, detail: string, req?: IncomingMessage): void {
  const body = failureBody(status, detail);
  const h = req?.headers;
  // An unread request body would be parsed as the next request: close instead.
  const unreadBody = h !== undefined && ((h['content-length'] !== undefined && h['content-length'] !== '0') || h['transfer-encoding'] !== undefined);
  res.writeHead(status, unreadBody
    ? { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' }
    : { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

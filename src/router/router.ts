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
import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_MAX_BODY_SIZE_BYTES,
  DEFAULT_MAX_HEADER_COUNT,
  DEFAULT_MAX_HEADER_SIZE_BYTES,
  DEFAULT_MAX_URL_LENGTH_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RESPONSE_TIMEOUT_MS,
} from '../config/defaults.ts';
import { AddressSet } from '../lib/cidr.ts';
import type { Color } from '../environments/types.ts';
import type { HealthView } from '../health/types.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import type { DataPlaneEngine, DrainReport, ListenerAddresses, RequestCapture, RequestRecord, SwapResult } from './data-plane.ts';
import { HttpExchange, type ProxyContext } from './http-exchange.ts';
import { Lane } from './lanes.ts';
import { absoluteForm, rejectRequest, rejectUpgrade, type Rejection, type RequestLimits } from './request-guard.ts';
import { RequestStats, type ListenerName } from './request-stats.ts';
import { EMPTY_ROUTE_TABLE, freezeTable, type RouteTable } from './route-table.ts';
import { failureBody, STATUS_TEXT } from './upstream-errors.ts';
import { loadTlsFiles, type TlsFiles } from '../lib/tls-files.ts';
import { type BoundRoute, type Upstream, UpstreamSet } from './upstreams.ts';
import { WebSocketTunnel, writeRawFailure } from './websocket-tunnel.ts';

export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_RESPONSE_TIMEOUT_MS };
export type { ListenerName, RequestLimits, TlsFiles };
export { RequestStats };

/**
 * Client keep-alive idle time: longer than the 60 s idle timeouts of common load balancers in
 * front of us, so they (not we) close idle connections and never race a request into a closing
 * socket.
 */
export const CLIENT_KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** The name an in-process router acknowledges route revisions with. */
export const DEFAULT_ROUTER_ID = 'local';

export interface RouterOptions {
  /** Name in acknowledgements; default `local`. */
  id?: string;
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
  /** Limits on what clients send (defaults: the `DEFAULT_*` constants of config/defaults.ts). */
  limits?: Partial<RequestLimits>;
  /** Addresses or CIDR ranges whose X-Forwarded-* headers are kept; everyone else's are replaced. */
  trustedProxies?: readonly string[];
  /**
   * Certificate and key files: the live listener speaks HTTPS; `reloadTls()` re-reads them. The
   * preview listener stays plain HTTP (internal: gates and testers reach it on loopback).
   */
  tls?: TlsFiles | null;
  /**
   * Client connections each listener holds at most (daemon/fd-limit.ts works them out from the
   * descriptor limit). Over it a new connection is closed as soon as it is accepted, before any
   * byte is read; connections already open are untouched. Absent: no limit.
   */
  maxConnections?: { live: number; preview: number };
}

/** A listener at its connection limit is logged at most every 10 seconds, not per refused connection. */
const DROP_LOG_EVERY_MS = 10_000;

interface Listener {
  name: ListenerName;
  server: Server | TlsServer;
}

/** Defaults for every limit, from the config defaults (one place for the numbers). */
export const DEFAULT_REQUEST_LIMITS: Readonly<RequestLimits> = Object.freeze({
  maxHeaderBytes: DEFAULT_MAX_HEADER_SIZE_BYTES,
  maxHeaderCount: DEFAULT_MAX_HEADER_COUNT,
  maxUrlBytes: DEFAULT_MAX_URL_LENGTH_BYTES,
  maxBodyBytes: DEFAULT_MAX_BODY_SIZE_BYTES,
  headersTimeoutMs: DEFAULT_HEADERS_TIMEOUT_MS,
  requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
});

function laneIndex(listener: ListenerName, color: Color): number {
  return (listener === 'live' ? 0 : 2) + (color === 'blue' ? 0 : 1);
}

export class Router implements DataPlaneEngine {
  /** This router's name in acknowledgements (`SwapResult.applied`). */
  readonly id: string;
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
  readonly #limits: RequestLimits;
  /** Requests refused before reaching any colour, by status (400, 408, 413, 414, 431, 501). */
  readonly #rejected = new Map<number, number>();
  /** Connections refused at the connection limit, per listener. */
  readonly #dropped: Record<ListenerName, number> = { live: 0, preview: 0 };
  readonly #dropLogged: Record<ListenerName, { at: number; count: number }> = { live: { at: 0, count: 0 }, preview: { at: 0, count: 0 } };

  constructor(opts: RouterOptions) {
    this.#opts = opts;
    this.id = opts.id ?? DEFAULT_ROUTER_ID;
    this.#logger = (opts.logger ?? silentLogger).child({ component: 'router' });
    this.#timeouts = {
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      responseTimeoutMs: opts.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT_MS,
    };
    const limits: RequestLimits = { ...DEFAULT_REQUEST_LIMITS, ...definedOnly(opts.limits ?? {}) };
    // Node refuses a headers timeout longer than the request timeout.
    if (limits.requestTimeoutMs > 0 && limits.headersTimeoutMs > limits.requestTimeoutMs) limits.headersTimeoutMs = limits.requestTimeoutMs;
    this.#limits = limits;
    this.#upstreams = new UpstreamSet({ ...this.#timeouts, maxHeaderBytes: limits.maxHeaderBytes }, this.#logger);
    const logger = this.#logger;
    const health = opts.health;
    this.#ctx = {
      health,
      stats: this.stats,
      upstreams: this.#upstreams,
      onRequest: opts.onRequest,
      trustedProxies: new AddressSet(opts.trustedProxies ?? []),
      proto: { live: opts.tls ? 'https' : 'http', preview: 'http' },
      maxBodyBytes: limits.maxBodyBytes,
      capture: null,
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
    const lim = this.#limits;
    const serverOptions: ServerOptions = {
      maxHeaderSize: lim.maxHeaderBytes,
      // Never lenient, whatever --insecure-http-parser says: a proxy that parses differently from
      // its upstream is how requests get smuggled.
      insecureHTTPParser: false,
      requireHostHeader: true,
      headersTimeout: lim.headersTimeoutMs,
      requestTimeout: lim.requestTimeoutMs,
      // How often Node looks for slow clients (its default, 30 s, would make a 10 s timeout up to 40 s).
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor((lim.headersTimeoutMs || 4_000) / 4))),
      keepAliveTimeout: CLIENT_KEEP_ALIVE_TIMEOUT_MS,
      // Only WebSocket handshakes become tunnels. Any other Upgrade (`h2c`, `TLS/1.0`, made-up
      // protocols) is served as the plain HTTP/1.1 request it also is, with Upgrade and Connection
      // stripped as hop-by-hop (RFC 9110 §7.8: a server may ignore Upgrade) — as nginx does. Before,
      // `Upgrade: h2c` was forwarded and the connection tunnelled raw, past every check of the
      // router. (Node ≥ 24.9 / 22.21; on older ones #onUpgrade refuses non-WebSocket upgrades.)
      shouldUpgradeCallback: isWebSocketUpgrade,
    };
    const tls = this.#opts.tls ? loadTlsFiles(this.#opts.tls, 'router.tls') : null;
    for (const [name, addr] of specs) {
      const server = tls && name === 'live' ? createTlsServer({ ...serverOptions, ...tls }) : createServer(serverOptions);
      server.keepAliveTimeout = CLIENT_KEEP_ALIVE_TIMEOUT_MS;
      // One above the limit, so that the guard sees the excess (Node drops extra lines silently).
      server.maxHeadersCount = lim.maxHeaderCount + 1;
      // One closure per listener, not per request.
      server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(name, req, res));
      // `Expect: 100-continue`: refuse before the client sends a body we would not forward.
      server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
        if (this.#refuse(req, res)) return;
        res.writeContinue();
        this.#onRequest(name, req, res);
      });
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(name, req, socket, head));
      server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex) => this.#onClientError(err, socket));
      const max = this.#opts.maxConnections?.[name];
      if (max !== undefined) {
        // Node closes a connection over the limit right after accept(): no parser, no request, no
        // upstream connection — so the descriptors of open connections, upstreams, health checks
        // and the admin API stay available (issue #15).
        server.maxConnections = max;
        server.on('drop', () => this.#onDrop(name, max));
      }
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

  addresses(): ListenerAddresses {
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
   * the snapshot they arrived under. Returns the drain of the colour that left the live listener;
   * `applied` is settled at once (this one router serves the table when swap returns).
   */
  swap(next: RouteTable): SwapResult {
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
    return { revision: table.revision, drain, applied: Promise.resolve({ revision: table.revision, acknowledged: [this.id], missing: [] }) };
  }

  /**
   * Re-reads the TLS certificate and key and uses them for new handshakes on the live listener;
   * connections already open keep theirs (nothing is dropped). A bad pair is refused (throws) and
   * the current certificate stays.
   */
  reloadTls(): boolean {
    if (!this.#opts.tls) return false;
    const tls = loadTlsFiles(this.#opts.tls, 'router.tls');
    for (const l of this.#listeners) if (l.name === 'live') (l.server as TlsServer).setSecureContext(tls);
    this.#logger.info({ cert: this.#opts.tls.cert }, 'router TLS certificate reloaded');
    return true;
  }

  /** Connections refused at each listener's connection limit, and the limits. */
  connections(): Record<ListenerName, { open: number; max: number | null; refused: number }> {
    const of = (name: ListenerName) => {
      const l = this.#listeners.find((x) => x.name === name);
      const max = this.#opts.maxConnections?.[name] ?? null;
      return { open: l ? connectionsOf(l.server) : 0, max, refused: this.#dropped[name] };
    };
    return { live: of('live'), preview: of('preview') };
  }

  #onDrop(name: ListenerName, max: number): void {
    this.#dropped[name]++;
    const log = this.#dropLogged[name];
    const now = Date.now();
    if (now - log.at < DROP_LOG_EVERY_MS) return;
    this.#logger.warn({ listener: name, maxConnections: max, refused: this.#dropped[name] - log.count, refusedTotal: this.#dropped[name] }, 'connection limit reached: new connections are refused while the open ones keep working (router.maxConnections)');
    log.at = now;
    log.count = this.#dropped[name];
  }

  /**
   * Copy chosen live requests (head, bounded body prefix) into their `onRequest` record, or stop
   * (null). For the traffic sample of the compatibility run; requests not chosen cost one call.
   */
  setCapture(capture: RequestCapture | null): void {
    this.#ctx.capture = capture;
  }

  /** Requests refused before reaching any colour (malformed, too large, too slow), by status. */
  rejections(): Record<string, number> {
    return Object.fromEntries(this.#rejected);
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
    if (this.#refuse(req, res)) return;
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
    const bad = rejectUpgrade(req, this.#limits) ?? badTarget(req) ?? (isWebSocketUpgrade(req) ? null : { status: 400 as const, detail: 'only WebSocket upgrades are proxied' });
    if (bad !== null) {
      this.#count(bad.status);
      writeRawFailure(socket, bad.status, bad.detail);
      return;
    }
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

  /** Answers (and closes) a request that must not be forwarded; true when it did. */
  #refuse(req: IncomingMessage, res: ServerResponse): boolean {
    const bad = rejectRequest(req, this.#limits) ?? badTarget(req);
    if (bad === null) return false;
    this.#count(bad.status);
    const body = failureBody(bad.status, bad.detail);
    // Always close: the body (if any) is unread and the framing may be what is wrong.
    res.shouldKeepAlive = false;
    res.writeHead(bad.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
    return true;
  }

  /**
   * A head Node's parser refused (malformed, too large) or a client too slow to send its request.
   * Nothing was forwarded; answer once, unless a response is already on the wire, and close.
   */
  #onClientError(err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex): void {
    const status = err.code === 'HPE_HEADER_OVERFLOW'
      ? (requestLineLonger(err.rawPacket, this.#limits.maxUrlBytes) ? 414 : 431)
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    // A response already started on this connection (a slow request body after the upstream
    // answered): our bytes would corrupt it. Cut instead.
    const inFlight = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (socket.writable && err.code !== 'ECONNRESET' && !(inFlight?.headersSent ?? false)) {
      this.#count(status);
      socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      // A client that does not read its answer must not hold the socket.
      setTimeout(() => socket.destroy(), 1_000).unref();
    } else {
      socket.destroy();
    }
  }

  #count(status: number): void {
    this.#rejected.set(status, (this.#rejected.get(status) ?? 0) + 1);
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

/** Open connections of a server, synchronously (Node keeps the count as `_connections`). */
function connectionsOf(server: Server | TlsServer): number {
  const n = (server as unknown as { _connections?: number })._connections;
  return typeof n === 'number' ? n : 0;
}

/** A WebSocket handshake (RFC 6455 §4.1: `Upgrade: websocket`, case-insensitive). */
function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const u = req.headers.upgrade;
  return u !== undefined && u.length === 9 && u.toLowerCase() === 'websocket';
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

/** A request target that is neither origin form (`/path`) nor a usable absolute form. */
function badTarget(req: IncomingMessage): Rejection | null {
  const url = req.url ?? '';
  if (url.charCodeAt(0) === 47 /* / */) return null;
  if (url === '*' && req.method === 'OPTIONS') return null;
  return absoluteForm(url) === null ? { status: 400, detail: 'invalid request target' } : null;
}

/** Whether the request line in what was received is longer than `max` (the head overflowed because of the URL). */
function requestLineLonger(raw: Buffer | undefined, max: number): boolean {
  if (raw === undefined) return false;
  const nl = raw.indexOf(10);
  return (nl === -1 ? raw.length : nl) > max;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

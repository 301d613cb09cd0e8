/**
 * The router (data plane): an HTTP/1.1, HTTP/2 (on TLS) and WebSocket reverse proxy with the
 * listeners `live`, `preview` and, optionally, a TLS listener (`router.tls.listen`, HTTP/2 and
 * HTTP/1.1 by ALPN, certificate by SNI) that serves like `live`. Each request goes to the colour
 * the current route table of its service names for that listener. With several services, the
 * service is chosen by host and path prefix (service-map.ts); each service has its own route
 * table, lanes, pools and stats (service-routes.ts).
 *
 * A request binds to the route snapshot it arrived under and finishes there (DESIGN promise 1);
 * `swap` is one synchronous reference swap (promise 3) and starts the drain of the colour that
 * left the live listener. The router never chooses colours: the controller does, and the router
 * answers 503 rather than send traffic to a colour with no healthy instance (promise 2).
 *
 * Owns: listeners, the service map, ACME HTTP-01 answers; per service (ServiceRoutes) the current
 * snapshot, lanes and drains, upstream pools, request stats.
 * Must never: log per request, buffer whole bodies, touch the live colour's connections in a
 * drain, or add headers of its own beyond X-Forwarded-*.
 */
import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { Server as NetServer, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
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
import type { Color } from '../environments/types.ts';
import type { HealthView } from '../health/types.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import type { DataPlane, DataPlaneEngine, DrainReport, ListenerAddresses, RequestCapture, RequestRecord, StatsReader, SwapResult } from './data-plane.ts';
import { ClientHttp1 } from './client-http1.ts';
import { HttpExchange, type ExchangeExtras } from './http-exchange.ts';
import type { MirrorReport } from './mirror.ts';
import { PreviewAccess, type PreviewAccessOptions } from './preview-access.ts';
import { chooseSplit } from './split.ts';
import { absoluteForm, rejectRequest, rejectUpgrade, type Rejection, type RequestLimits } from './request-guard.ts';
import { RequestStats, type ListenerName } from './request-stats.ts';
import type { RouteTable } from './route-table.ts';
import { failureBody, STATUS_TEXT } from './upstream-errors.ts';
import { loadTlsFiles, type TlsFiles } from '../lib/tls-files.ts';
import type { CertificateStore } from '../tls/certificate-store.ts';
import type { BoundRoute } from './upstreams.ts';
import { resolveService, type ServiceMap } from './service-map.ts';
import { ServiceRoutes } from './service-routes.ts';
import { WebSocketTunnel, writeRawFailure } from './websocket-tunnel.ts';

export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_RESPONSE_TIMEOUT_MS };
export type { ListenerName, MirrorReport, PreviewAccessOptions, RequestLimits, TlsFiles, ServiceMap };
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
   * Bind with SO_REUSEPORT, so that several routers (worker threads, `router.workers`) share the
   * ports and the kernel spreads connections among them (Linux; Node ≥ 22.12), and a newer router
   * process can bind them while this one drains (router-process.ts).
   */
  reusePort?: boolean;
  /**
   * Preview on the live listener: requests with this header or cookie from a trusted address, or
   * with a signed value, go to the preview colour. Absent: the live listener serves only live.
   */
  previewAccess?: PreviewAccessOptions | null;
  /**
   * `router.tls.listen`: an extra listener that speaks HTTPS (HTTP/2 and HTTP/1.1 by ALPN) and
   * serves like `live`; certificates come from `certificates` by SNI. `listen` stays plain HTTP
   * (traffic, and ACME HTTP-01 challenges).
   */
  tlsListen?: { host: string; port: number } | null;
  /** Certificates chosen by SNI on TLS listeners (files and ACME); else `tls` alone. */
  certificates?: CertificateStore | null;
  /** Answer for an ACME HTTP-01 token (`GET /.well-known/acme-challenge/TOKEN` on the plain live listener). */
  acmeChallenge?: ((token: string) => string | undefined) | null;
  /**
   * The services behind the shared listeners (absent: one service, named `default`, with
   * `health` and `onRequest`). `direct`: the service also gets its own loopback live and preview
   * listeners on ephemeral ports, which reach it without host matching (its gates, verify and
   * drill use them).
   */
  services?: readonly ServiceSpec[];
  /** Host/prefix → service (absent: every request goes to the first service). */
  serviceMap?: ServiceMap | null;
  /**
   * Client connections each listener holds at most (daemon/fd-limit.ts works them out from the
   * descriptor limit). Over it a new connection is closed as soon as it is accepted, before any
   * byte is read; connections already open are untouched. Absent: no limit. The TLS listener has
   * the `live` limit of its own; a service's loopback listeners have none.
   */
  maxConnections?: { live: number; preview: number };
}

/** A listener at its connection limit is logged at most every 10 seconds, not per refused connection. */
const DROP_LOG_EVERY_MS = 10_000;

/** A retiring router's idle keep-alive connections get this long to carry one more request (answered with `Connection: close`) before they are closed: 2 seconds. */
export const RETIRE_IDLE_GRACE_MS = 2_000;

export interface ServiceSpec {
  name: string;
  health: HealthView;
  onRequest?: (r: RequestRecord) => void;
  direct?: boolean;
}

interface Listener {
  name: ListenerName;
  server: Server | Http2SecureServer;
  /** Set for a service's own (direct) listener; null = the service is chosen per request. */
  service: ServiceRoutes | null;
  /** The plain live listener answers ACME HTTP-01 challenges. */
  acme: boolean;
  /** Speaks TLS (HTTP/2 and HTTP/1.1). */
  secure: boolean;
  /** Plain listeners: the client side that serves simple requests without node:http (client-http1.ts). */
  http1: ClientHttp1 | null;
}

/** HTTP/2 settings: concurrent streams per connection, as nginx's `http2_max_concurrent_streams`. */
export const HTTP2_MAX_CONCURRENT_STREAMS = 128;
const ACME_PREFIX = '/.well-known/acme-challenge/';

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * One service's data plane: what its controller drives (its own table and swap) and its plugins
 * read (its stats, in-flight counts, addresses). With `services:`, `addresses()` are the
 * service's own loopback listeners, so its gates reach it without host matching.
 */
export interface ServiceRouter extends DataPlane {
  readonly name: string;
  readonly stats: StatsReader & RequestStats;
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

export class Router implements DataPlaneEngine {
  /** This router's name in acknowledgements (`SwapResult.applied`). */
  readonly id: string;
  readonly #opts: RouterOptions;
  readonly #logger: Logger;
  readonly #timeouts: { connectTimeoutMs: number; responseTimeoutMs: number };
  /** By name, in config order; the first is the one `table()`/`swap()`/`stats` of the router itself address. */
  readonly #services = new Map<string, ServiceRoutes>();
  readonly #primary: ServiceRoutes;
  readonly #direct = new Map<string, { live: Listener | null; preview: Listener | null }>();
  /** `router.tls.listen`, once bound. */
  #tlsListener: Listener | null = null;
  #serviceMap: ServiceMap | null;
  readonly #previewAccess: PreviewAccess | null;
  readonly #secureLive: boolean;
  #listeners: Listener[] = [];
  /** Set by retire(): every answer says `Connection: close`, so clients reconnect to the newer router. */
  #retiring = false;
  /** Client sockets of TLS listeners (an HTTP/2 server has no closeAllConnections). */
  readonly #tlsSockets = new Set<Socket>();
  #closed = false;
  readonly #limits: RequestLimits;
  /** Requests refused before reaching any colour, by status (400, 404, 408, 413, 414, 431, 501). */
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
    const specs: readonly ServiceSpec[] = opts.services && opts.services.length > 0 ? opts.services : [{ name: 'default', health: opts.health, onRequest: opts.onRequest }];
    for (const spec of specs) {
      const logger = specs.length > 1 ? this.#logger.child({ service: spec.name }) : this.#logger;
      this.#services.set(spec.name, new ServiceRoutes({
        name: spec.name, health: spec.health, onRequest: spec.onRequest,
        drainTimeoutMs: opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS,
        pool: { ...this.#timeouts, maxHeaderBytes: limits.maxHeaderBytes },
        trustedProxies: opts.trustedProxies ?? [],
        liveProto: opts.tls && !opts.tlsListen ? 'https' : 'http',
        maxBodyBytes: limits.maxBodyBytes,
        logger,
      }));
    }
    this.#primary = this.#services.values().next().value as ServiceRoutes;
    this.#previewAccess = opts.previewAccess ? new PreviewAccess(opts.previewAccess) : null;
    this.#secureLive = Boolean(opts.tls) || Boolean(opts.tlsListen);
    this.#serviceMap = opts.serviceMap ?? null;
  }

  /** The request stats of the first (or only) service. */
  get stats(): RequestStats {
    return this.#primary.stats;
  }

  /** Binds the live listener, the preview listener and the TLS listener when configured, and each service's direct listeners. */
  async start(): Promise<void> {
    if (this.#listeners.length > 0) return;
    const o = this.#opts;
    // With router.tls.listen, `listen` stays plain HTTP; with only router.tls, `listen` speaks TLS (as before).
    const liveTls = o.tls && !o.tlsListen ? 'tls' : 'plain';
    await this.#listen('live', o.listen, liveTls, null, liveTls === 'plain' && !!o.acmeChallenge);
    if (o.preview !== null) await this.#listen('preview', o.preview, 'plain', null, false);
    if (o.tlsListen) this.#tlsListener = await this.#listen('live', o.tlsListen, 'tls', null, false);
    for (const svc of this.#services.values()) {
      if (!(o.services ?? []).find((x) => x.name === svc.name)?.direct) continue;
      const live = await this.#listen('live', { host: '127.0.0.1', port: 0 }, 'plain', svc, false);
      const preview = o.preview !== null ? await this.#listen('preview', { host: '127.0.0.1', port: 0 }, 'plain', svc, false) : null;
      this.#direct.set(svc.name, { live, preview });
    }
    this.#logger.info({ addresses: this.addresses(), tls: this.tlsAddress(), services: [...this.#services.keys()] }, 'router listening');
  }

  async #listen(name: ListenerName, addr: { host: string; port: number }, kind: 'plain' | 'tls', service: ServiceRoutes | null, acme: boolean): Promise<Listener> {
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
    const server = kind === 'tls' ? this.#tlsServer(serverOptions) : createServer(serverOptions);
    // One above the header-count limit, so that the guard sees the excess (Node drops extra lines
    // silently). An HTTP/2 server with allowHTTP1 reads these from itself for its HTTP/1.1 side.
    Object.assign(server, { keepAliveTimeout: CLIENT_KEEP_ALIVE_TIMEOUT_MS, maxHeadersCount: lim.maxHeaderCount + 1 });
    const l: Listener = { name, server, service, acme, secure: kind === 'tls', http1: null };
    if (kind === 'plain') {
      l.http1 = new ClientHttp1(server as Server, {
        maxHeaderBytes: lim.maxHeaderBytes,
        maxHeaderCount: lim.maxHeaderCount,
        keepAliveTimeoutMs: CLIENT_KEEP_ALIVE_TIMEOUT_MS,
        headersTimeoutMs: lim.headersTimeoutMs,
        // What #refuse and the ACME answer would take: node:http serves those requests.
        accepts: (req) => {
          const r = req.asIncoming();
          return rejectRequest(r, lim) === null && badTarget(r) === null && !(acme && req.url.startsWith(ACME_PREFIX));
        },
        onRequest: (req, res) => this.#onRequest(l, req.asIncoming(), res as unknown as ServerResponse, true),
        retiring: () => this.#retiring,
      });
    }
    // One closure per listener, not per request.
    server.on('request', (req: AnyRequest, res: AnyResponse) => this.#onRequest(l, req as IncomingMessage, res as ServerResponse));
    // `Expect: 100-continue`: refuse before the client sends a body we would not forward.
    server.on('checkContinue', (req: AnyRequest, res: AnyResponse) => {
      if (this.#refuse(req as IncomingMessage, res as ServerResponse)) return;
      res.writeContinue();
      this.#onRequest(l, req as IncomingMessage, res as ServerResponse, true);
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(l, req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex) => this.#onClientError(err, socket));
    const max = service === null ? this.#opts.maxConnections?.[name] : undefined;
    if (max !== undefined) {
      // Node closes a connection over the limit right after accept(): no parser, no request, no
      // upstream connection — so the descriptors of open connections, upstreams, health checks
      // and the admin API stay available (issue #15).
      server.maxConnections = max;
      server.on('drop', () => this.#onDrop(name, max));
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: addr.port, host: addr.host, reusePort: this.#opts.reusePort === true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#listeners.push(l);
    return l;
  }

  /**
   * An HTTPS listener that speaks HTTP/2 and HTTP/1.1 (ALPN; `allowHTTP1`), with the same limits
   * as the plain listeners: HTTP/1.1 connections go through Node's HTTP/1 parser with the
   * settings copied below; HTTP/2 requests get the head limits as HTTP/2 settings.
   */
  #tlsServer(http1: ServerOptions): Http2SecureServer {
    const lim = this.#limits;
    const store = this.#opts.certificates ?? null;
    const files = this.#opts.tls ? loadTlsFiles(this.#opts.tls, 'router.tls') : null;
    const pem = files ?? store?.defaultPem() ?? null;
    const server = createSecureServer({
      allowHTTP1: true,
      ...(pem ?? {}),
      ...(store !== null ? { SNICallback: store.sniCallback } : {}),
      settings: { maxConcurrentStreams: HTTP2_MAX_CONCURRENT_STREAMS, maxHeaderListSize: lim.maxHeaderBytes },
      // Pseudo-headers (:method, :path, :scheme, :authority) come on top of the header lines, and
      // some room above the limit lets the guard answer 431 (far beyond it, Node resets the stream).
      maxHeaderListPairs: lim.maxHeaderCount + 32,
    });
    // The HTTP/1.1 side reads these from the server object (as an http.Server would).
    Object.assign(server, {
      maxHeaderSize: http1.maxHeaderSize, insecureHTTPParser: false, requireHostHeader: true,
      headersTimeout: http1.headersTimeout, requestTimeout: http1.requestTimeout,
      connectionsCheckingInterval: http1.connectionsCheckingInterval, shouldUpgradeCallback: http1.shouldUpgradeCallback,
    });
    // An idle HTTP/2 connection is closed like an idle keep-alive one.
    server.setTimeout(CLIENT_KEEP_ALIVE_TIMEOUT_MS);
    server.on('secureConnection', (socket: TLSSocket) => {
      this.#tlsSockets.add(socket);
      socket.once('close', () => this.#tlsSockets.delete(socket));
    });
    server.on('tlsClientError', () => { /* a failed handshake (no certificate for the name, a scanner): nothing to answer */ });
    return server;
  }

  addresses(): ListenerAddresses {
    const of = (name: ListenerName, fallback: { host: string; port: number } | null) => {
      const l = this.#listeners.find((x) => x.name === name && x.service === null && x !== this.#tlsListener);
      const a = l?.server.address() as AddressInfo | null | undefined;
      return a ? { host: a.address, port: a.port } : fallback;
    };
    return { live: of('live', this.#opts.listen) ?? this.#opts.listen, preview: of('preview', this.#opts.preview) };
  }

  /** The bound address of `router.tls.listen`, or null. */
  tlsAddress(): { host: string; port: number } | null {
    if (!this.#opts.tlsListen) return null;
    const a = this.#tlsListener?.server.address() as AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : this.#opts.tlsListen;
  }

  /** Names of the services, in config order. */
  serviceNames(): string[] {
    return [...this.#services.keys()];
  }

  /** The view a service's controller and plugins use. Throws for an unknown name. */
  service(name: string): ServiceRouter {
    const svc = this.#services.get(name);
    if (svc === undefined) throw new Error(`router: no service ${JSON.stringify(name)}`);
    return {
      name,
      stats: svc.stats,
      table: () => svc.table(),
      swap: (next) => this.#applied(svc.swap(next)),
      inFlight: (l, c) => svc.inFlight(l, c),
      rejections: () => this.rejections(),
      setCapture: (capture) => { svc.ctx.capture = capture; },
      mirrorReport: (id) => svc.mirrorReport(id),
      addresses: () => {
        const d = this.#direct.get(name);
        if (d === undefined) return this.addresses();
        const a = (x: Listener | null) => {
          const ad = x?.server.address() as AddressInfo | null | undefined;
          return ad ? { host: ad.address, port: ad.port } : null;
        };
        return { live: a(d.live) ?? this.addresses().live, preview: a(d.preview) };
      },
    };
  }

  /** Replace the host/prefix → service map (one reference swap; requests in flight keep their service). */
  setServiceMap(map: ServiceMap | null): void {
    this.#serviceMap = map;
  }

  table(): RouteTable {
    return this.#primary.table();
  }

  /**
   * One synchronous swap of the first (or only) service's table: requests that arrive from now on
   * use `next`; requests in flight keep the snapshot they arrived under. Returns the drain of the
   * colour that left the live listener.
   */
  swap(next: RouteTable): SwapResult {
    return this.#applied(this.#primary.swap(next));
  }

  /** In-process, this one router serves the table when swap returns: `applied` is settled at once. */
  #applied(r: { revision: number; drain: Promise<DrainReport> | null }): SwapResult {
    return { ...r, applied: Promise.resolve({ revision: r.revision, acknowledged: [this.id], missing: [] }) };
  }

  /**
   * Re-reads the TLS certificate and key and uses them for new handshakes on the TLS listener;
   * connections already open keep theirs (nothing is dropped). A bad pair is refused (throws) and
   * the current certificate stays.
   */
  reloadTls(): boolean {
    if (!this.#opts.tls) return false;
    const tls = loadTlsFiles(this.#opts.tls, 'router.tls');
    for (const l of this.#listeners) if (l.secure) (l.server as Http2SecureServer).setSecureContext(tls);
    this.#logger.info({ cert: this.#opts.tls.cert }, 'router TLS certificate reloaded');
    return true;
  }

  /** Counts of a mirroring run of the first (or only) service (`table.mirror.id`). */
  mirrorReport(id: string): MirrorReport | null {
    return this.#primary.mirrorReport(id);
  }

  /** Open connections, the limit and connections refused at it, per listener (the TLS listener counts as live). */
  connections(): Record<ListenerName, { open: number; max: number | null; refused: number }> {
    const of = (name: ListenerName) => {
      let open = 0;
      for (const l of this.#listeners) if (l.name === name && l.service === null) open += connectionsOf(l.server);
      return { open, max: this.#opts.maxConnections?.[name] ?? null, refused: this.#dropped[name] };
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
   * Copy chosen live requests (head, bounded body prefix) of the first (or only) service into their
   * `onRequest` record, or stop (null). For the traffic sample of the compatibility run; requests
   * not chosen cost one call. Per service: `service(name).setCapture`.
   */
  setCapture(capture: RequestCapture | null): void {
    this.#primary.ctx.capture = capture;
  }

  /** Requests refused before reaching any colour (malformed, too large, too slow, unknown host), by status. */
  rejections(): Record<string, number> {
    return Object.fromEntries(this.#rejected);
  }

  /** Requests plus WebSockets in flight on a listener of the first service (optionally only those bound to `color`). */
  inFlight(listener: ListenerName, color?: Color): number {
    return this.#primary.inFlight(listener, color);
  }

  /** Stops listening, closes every connection (in flight or idle) and every upstream pool. */
  /**
   * Hand the listeners over to a newer router bound to the same ports (SO_REUSEPORT): stop
   * accepting, answer every further request with `Connection: close` (clients reconnect, and only
   * the newer router is listening), close connections still idle after `idleGraceMs`, wait for
   * what is in flight up to `drainTimeoutMs`, then close. Resolves with what had to be cut.
   */
  async retire(o: { idleGraceMs?: number; drainTimeoutMs?: number } = {}): Promise<{ completed: boolean; inFlightCut: number }> {
    if (this.#closed) return { completed: true, inFlightCut: 0 };
    this.#retiring = true;
    const drainMs = o.drainTimeoutMs ?? this.#opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
    const graceMs = Math.min(o.idleGraceMs ?? RETIRE_IDLE_GRACE_MS, drainMs);
    // Stop accepting first: from here on the kernel gives new connections to the newer router only.
    // net.Server's close, not http.Server's: that one also closes idle keep-alive connections at
    // once, racing the next request a client is sending on them (it would fail).
    const stopped = this.#listeners.map((l) => new Promise<void>((resolve) => netServerClose.call(l.server as unknown as NetServer, () => resolve())));
    const inFlight = () => this.inFlight('live') + this.inFlight('preview');
    this.#logger.info({ inFlight: inFlight() }, 'router retiring: listeners handed over, draining');
    const closeIdle = () => {
      for (const l of this.#listeners) {
        if ('closeIdleConnections' in l.server) l.server.closeIdleConnections();
        l.http1?.closeIdle();
      }
    };
    const t0 = performance.now();
    await sleep(graceMs);
    closeIdle();
    while (inFlight() > 0 && performance.now() - t0 < drainMs) {
      await sleep(50);
      closeIdle();
    }
    const inFlightCut = inFlight();
    await this.close();
    await Promise.all(stopped);
    return { completed: inFlightCut === 0, inFlightCut };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closing = this.#listeners.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve())));
    // Pending drains resolve as not completed, with what was cut.
    for (const svc of this.#services.values()) svc.forceEnd('router closing');
    for (const l of this.#listeners) if ('closeAllConnections' in l.server) l.server.closeAllConnections();
    for (const l of this.#listeners) l.http1?.closeAll();
    for (const s of this.#tlsSockets) s.destroy();
    await Promise.all(closing);
    for (const svc of this.#services.values()) svc.mirror.close();
    for (const svc of this.#services.values()) await svc.upstreams.destroyAll();
    this.#listeners = [];
    this.#logger.info('router closed');
  }

  // ── hot path ──

  /** The service a request on `l` belongs to: the listener's own, the only one, or by host and path. */
  #serviceOf(l: Listener, req: IncomingMessage): ServiceRoutes | null {
    if (l.service !== null) return l.service;
    const map = this.#serviceMap;
    if (map === null) return this.#primary;
    const url = req.url ?? '/';
    const abs = url.charCodeAt(0) === 47 ? null : absoluteForm(url);
    const host = abs?.host ?? req.headers.host ?? (req.headers[':authority'] as string | undefined);
    const name = resolveService(map, host, abs?.path ?? url);
    return name === null ? null : (this.#services.get(name) ?? null);
  }

  #onRequest(l: Listener, req: IncomingMessage, res: ServerResponse, checked = false): void {
    const startedAt = performance.now();
    if (this.#retiring) res.shouldKeepAlive = false;
    if (!checked && this.#refuse(req, res)) return;
    if (l.acme && req.url !== undefined && req.url.startsWith(ACME_PREFIX) && this.#acme(req, res)) return;
    const svc = this.#serviceOf(l, req);
    if (svc === null) {
      this.#count(404);
      answer(res, 404, `no service is configured for host ${JSON.stringify(req.headers.host ?? req.headers[':authority'] ?? '')}`, req);
      return;
    }
    const listener = l.name;
    // The binding moment: this request belongs to the snapshot current right now.
    let route = listener === 'live' ? svc.live : svc.preview;
    let extras: ExchangeExtras | null = null;
    let counted = listener;
    if (listener === 'live') {
      if (this.#previewAccess !== null && svc.preview !== null && this.#previewAccess.allows(req)) {
        // A tester on the live hostname: served and counted as preview traffic (never judged as live).
        route = svc.preview;
        counted = 'preview';
        extras = { via: 'live' };
      } else if (svc.split !== null) {
        const sp = svc.split;
        const c = chooseSplit(req, sp.share, sp.stickiness, this.#secureLive);
        // Promise 2: a split colour with no healthy instance leaves its share on the live colour.
        if (c.split && (route === null || sp.route.pick(svc.health, null) !== null)) route = sp.route;
        if (c.setCookie !== null) extras = { setCookie: c.setCookie };
      }
      if (svc.mirrorOn && route !== null && route === svc.live) extras = { ...extras, mirror: true };
    }
    if (route === null) {
      answer(res, 503, listener === 'live' ? 'no release is live yet' : 'no release is in preview', req);
      return;
    }
    const first = route.pick(svc.health, null);
    if (first === null) {
      this.#noHealthy(svc, counted, route, req, res, startedAt);
      return;
    }
    new HttpExchange(svc.ctx, counted, route, req, res, startedAt, extras).start(svc.lane(counted, route.color), first);
  }

  /** ACME HTTP-01 (RFC 8555 §8.3): the key authorization for a pending token; unknown tokens fall through to routing. */
  #acme(req: IncomingMessage, res: ServerResponse): boolean {
    const token = (req.url ?? '').slice(ACME_PREFIX.length).split('?')[0];
    const body = this.#opts.acmeChallenge?.(token);
    if (body === undefined) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return true;
  }

  #onUpgrade(l: Listener, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const startedAt = performance.now();
    socket.on('error', () => socket.destroy()); // before the tunnel owns it
    const bad = rejectUpgrade(req, this.#limits) ?? badTarget(req) ?? (isWebSocketUpgrade(req) ? null : { status: 400 as const, detail: 'only WebSocket upgrades are proxied' });
    if (bad !== null) {
      this.#count(bad.status);
      writeRawFailure(socket, bad.status, bad.detail);
      return;
    }
    const svc = this.#serviceOf(l, req);
    if (svc === null) {
      this.#count(404);
      writeRawFailure(socket, 404, `no service is configured for host ${JSON.stringify(req.headers.host ?? '')}`);
      return;
    }
    const listener = l.name;
    let route = listener === 'live' ? svc.live : svc.preview;
    if (listener === 'live') {
      if (this.#previewAccess !== null && svc.preview !== null && this.#previewAccess.allows(req)) route = svc.preview;
      else if (svc.split !== null) {
        // The visitor cookie cannot be set on a 101 we relay: a visitor without one is split at random.
        const sp = svc.split;
        if (chooseSplit(req, sp.share, sp.stickiness, this.#secureLive).split && sp.route.pick(svc.health, null) !== null) route = sp.route;
      }
    }
    if (route === null) {
      writeRawFailure(socket, 503, listener === 'live' ? 'no release is live yet' : 'no release is in preview');
      return;
    }
    const first = route.pick(svc.health, null);
    if (first === null) {
      this.#record(svc, listener, route, req.method ?? 'GET', 503, performance.now() - startedAt);
      writeRawFailure(socket, 503, `no healthy instance of ${route.color}`);
      return;
    }
    new WebSocketTunnel(svc.ctx, this.#timeouts, listener, route, req, socket, head, startedAt).start(svc.lane(listener, route.color), first);
  }

  /** Answers (and closes) a request that must not be forwarded; true when it did. */
  #refuse(req: IncomingMessage, res: ServerResponse): boolean {
    const bad = rejectRequest(req, this.#limits) ?? badTarget(req);
    if (bad === null) return false;
    this.#count(bad.status);
    const body = failureBody(bad.status, bad.detail);
    if (req.httpVersionMajor === 2) {
      // HTTP/2 frames every message: nothing to misread; the stream ends with the answer.
      res.writeHead(bad.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return true;
    }
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

  #noHealthy(svc: ServiceRoutes, listener: ListenerName, route: BoundRoute, req: IncomingMessage, res: ServerResponse, startedAt: number): void {
    answer(res, 503, `no healthy instance of ${route.color}`, req);
    this.#record(svc, listener, route, req.method ?? 'GET', 503, performance.now() - startedAt);
  }

  #record(svc: ServiceRoutes, listener: ListenerName, route: BoundRoute, method: string, status: number, durationMs: number): void {
    svc.stats.record(listener, route.color, status, durationMs, 'no-healthy');
    const hook = svc.onRequest;
    if (hook !== undefined) {
      try {
        hook({ listener, color: route.color, version: route.version, method, status, durationMs, error: 'no-healthy' });
      } catch { /* a metrics hook must not break the data plane */ }
    }
  }
}

/** Open connections of a server, synchronously (Node keeps the count as `_connections`). */
function connectionsOf(server: Server | Http2SecureServer): number {
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
  // (HTTP/2 frames every message: never `connection`, which it forbids.)
  const unreadBody = h !== undefined && req?.httpVersionMajor !== 2 && ((h['content-length'] !== undefined && h['content-length'] !== '0') || h['transfer-encoding'] !== undefined);
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

const netServerClose = NetServer.prototype.close as (this: NetServer, cb?: (err?: Error) => void) => NetServer;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

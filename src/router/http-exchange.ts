/**
 * One proxied HTTP request: the upstream handler (upstream-pool.ts) that streams the client's request to an
 * upstream of the route it was bound to, and the upstream's answer back, with backpressure both
 * ways. It is also the request's in-flight entry (a lane `Flight`).
 *
 * Owns: one exchange's life (dispatch, at most one retry, answer, record). Must never: choose a
 * route (it keeps the one it arrived under), buffer a whole body, retry a request that has a body
 * or a non-idempotent method, or retry after a response byte was forwarded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as http2Constants } from 'node:http2';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { HealthView } from '../health/types.ts';
import type { RequestCapture, RequestRecord } from './data-plane.ts';
import type { AddressSet } from '../lib/cidr.ts';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts';
import type { Flight, Lane } from './lanes.ts';
import { absoluteForm } from './request-guard.ts';
import type { ListenerName, ProxyErrorKind, RequestStats } from './request-stats.ts';
import { classifyUpstreamError, failureBody } from './upstream-errors.ts';
import { kStaleConnection, UPSTREAM_ERRORS, type UpstreamController, type UpstreamHandler } from './upstream-pool.ts';
import type { BoundRoute, Upstream, UpstreamSet } from './upstreams.ts';
import type { Mirror, MirrorCapture } from './mirror.ts';

/** What an exchange needs from the router (one object shared by all exchanges). */
export interface ProxyContext {
  readonly health: HealthView;
  readonly stats: RequestStats;
  readonly upstreams: UpstreamSet;
  readonly onRequest: ((r: RequestRecord) => void) | undefined;
  /** Clients whose X-Forwarded-* headers are kept (`router.trustedProxies`). */
  readonly trustedProxies: AddressSet;
  /** The scheme clients used per listener: `https` on the live listener when the router terminates TLS. */
  readonly proto: Readonly<Record<ListenerName, 'http' | 'https'>>;
  /** Request body limit in bytes; 0 = none. Content-Length is checked before; chunked bodies are counted. */
  readonly maxBodyBytes: number;
  /** Shadow traffic: captures of sampled live requests are handed to it once answered. */
  readonly mirror: Mirror;
  /** Which live requests to copy (head and a bounded body prefix) into their record; null: none. */
  capture: RequestCapture | null;
  reportFailure(u: Upstream, reason: string): void;
}

const NGHTTP2_INTERNAL_ERROR = http2Constants.NGHTTP2_INTERNAL_ERROR;
/** Per-request extras decided by the router before the exchange starts (rare; null for most requests). */
export interface ExchangeExtras {
  /** A Set-Cookie header the router adds to the answer (the visitor cookie of a gradual switch). */
  setCookie?: string | null;
  /** The request may be copied for comparison (mirroring is on and it is served by the live colour). */
  mirror?: boolean;
  /** The listener the client used, when it differs from the one the request is counted under (preview by header). */
  via?: ListenerName;
}

/** The error of a counted body that went past the limit (it fails the upstream attempt); answered 413. */
const BODY_TOO_LARGE = 'CUTOVER_BODY_TOO_LARGE';

/**
 * A chunked request body, counted as it streams: past `limit` bytes it fails, which aborts the
 * upstream request (the application sees a cut request, never a complete one). A Transform and
 * not an async iterator over `req`: ending an iterator early destroys the client socket, and the
 * client should get its 413.
 */
class CountedBody extends Transform {
  #n = 0;
  readonly #limit: number;
  readonly #capture: MirrorCapture | null;
  constructor(limit: number, capture: MirrorCapture | null = null) {
    super();
    this.#limit = limit;
    this.#capture = capture;
  }
  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#n += chunk.length;
    this.#capture?.requestChunk(chunk);
    if (this.#n > this.#limit) cb(Object.assign(new Error(`request body larger than ${this.#limit} bytes`), { code: BODY_TOO_LARGE }));
    else cb(null, chunk);
  }
}

/**
 * RFC 9110 §9.2.2 idempotent methods that we retry, and only when bodiless: a body stream can be
 * read once, and PATCH/POST may have had effects even when the connection failed.
 */
const RETRYABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** nginx's convention for "client closed the connection before the answer was complete". */
export const STATUS_CLIENT_CLOSED = 499;

const PENDING = 0; // no response byte sent to the client yet
const STREAMING = 1; // response head sent; body flowing
const DONE = 2;

const kExchange = Symbol('cutover.exchange');
const FRESH_CONNECTION = Object.freeze({ fresh: true });
type TaggedResponse = ServerResponse & { [kExchange]?: HttpExchange };

// Shared listeners (no per-request closures): the exchange is found through the response.
function onResponseClose(this: TaggedResponse): void {
  this[kExchange]?.clientClosed();
}
function onResponseDrain(this: TaggedResponse): void {
  this[kExchange]?.controller?.resume();
}

export class HttpExchange implements Flight, UpstreamHandler {
  readonly kind = 'http' as const;
  lane: Lane | null = null;
  prev: Flight | null = null;
  next: Flight | null = null;

  controller: UpstreamController | null = null;
  readonly #ctx: ProxyContext;
  readonly #listener: ListenerName;
  readonly #route: BoundRoute;
  readonly #req: IncomingMessage;
  readonly #res: TaggedResponse;
  readonly #headers: string[];
  readonly #path: string;
  readonly #hasBody: boolean;
  /** Chunked body under a limit: streamed through `CountedBody`. */
  readonly #counted: boolean;
  readonly #startedAt: number;
  /** The client speaks HTTP/2 (TLS listener): no status text, no connection-level headers. */
  readonly #h2: boolean;
  #upstream: Upstream | null = null;
  #retried = false;
  #staleRetried = false;
  #state = PENDING;
  #status = 0;
  #error: ProxyErrorKind | undefined = undefined;
  readonly #setCookie: string | null;
  readonly #capture: MirrorCapture | null;
  /** Set when the capture chose this request: the body prefix copied so far. */
  #copy: { chunks: Buffer[]; bytes: number; truncated: boolean } | null = null;

  constructor(ctx: ProxyContext, listener: ListenerName, route: BoundRoute, req: IncomingMessage, res: ServerResponse, startedAt: number, extras: ExchangeExtras | null = null) {
    this.#ctx = ctx;
    this.#listener = listener;
    this.#route = route;
    this.#req = req;
    this.#res = res as TaggedResponse;
    this.#startedAt = startedAt;
    const h = req.headers;
    const cl = h['content-length'];
    this.#h2 = req.httpVersionMajor === 2;
    // HTTP/2 frames bodies itself: a request has one unless its HEADERS frame ended the stream
    // (Content-Length is optional there, and Transfer-Encoding does not exist).
    this.#hasBody = this.#h2
      ? cl !== '0' && (req as unknown as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders !== true
      : (cl !== undefined && cl !== '0') || h['transfer-encoding'] !== undefined;
    this.#counted = ctx.maxBodyBytes > 0 && cl === undefined && this.#hasBody;
    const target = targetOf(req);
    this.#path = target.path;
    const remote = req.socket.remoteAddress;
    // The scheme the client used: its own socket says (a TLS listener next to a plain one).
    const proto = (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : ctx.proto[extras?.via ?? listener];
    const raw = this.#h2 ? http2ToHttp1Headers(req.rawHeaders) : req.rawHeaders;
    this.#headers = upstreamRequestHeaders(raw, h.connection, remote, proto, { trusted: ctx.trustedProxies.has(remote), host: target.host });
    this.#setCookie = extras?.setCookie ?? null;
    this.#capture = extras?.mirror === true ? ctx.mirror.pick(req.method ?? 'GET', cl, this.#path, this.#headers, route, h.cookie !== undefined || h.authorization !== undefined) : null;
    const capture = ctx.capture;
    if (capture !== null && listener === 'live' && capture.wants(req.method ?? 'GET', target.path)) this.#copy = { chunks: [], bytes: 0, truncated: false };
  }



  /** Links into the lane and sends the request to `first` (already picked, healthy). */
  start(lane: Lane, first: Upstream): void {
    lane.add(this);
    this.#res[kExchange] = this;
    this.#res.on('close', onResponseClose);
    this.#dispatch(first);
    // After the upstream consumer is attached: a second 'data' listener sees the same chunks (bounded copy).
    if (this.#copy !== null && this.#hasBody) this.#req.on('data', (chunk: Buffer) => this.#copyChunk(chunk));
  }

  #copyChunk(chunk: Buffer): void {
    const c = this.#copy;
    if (c === null || c.truncated) return;
    const limit = this.#ctx.capture?.maxBodyBytes ?? 0;
    if (c.bytes + chunk.length > limit) {
      c.truncated = true;
      if (limit > c.bytes) c.chunks.push(Buffer.from(chunk.subarray(0, limit - c.bytes)));
      c.bytes = limit;
      return;
    }
    c.chunks.push(Buffer.from(chunk));
    c.bytes += chunk.length;
  }

  /** Sends the request to `u` (`fresh`: on a new connection, not an idle one). */
  #dispatch(u: Upstream, fresh = false): void {
    if (this.#upstream !== u) {
      this.#upstream = u;
      this.#ctx.upstreams.acquire(u);
    }
    const req = this.#req;
    u.pool.dispatch(
      {
        path: this.#path,
        method: req.method ?? 'GET',
        headers: this.#headers,
        // Streamed: the client socket is paused while the upstream socket is full.
        body: this.#hasBody ? this.#body() : null,
      },
      this,
      fresh ? FRESH_CONNECTION : undefined,
    );
  }

  /** The request body stream: counted when chunked under a limit, tapped when mirrored. */
  #body(): Readable {
    const capture = this.#capture;
    if (this.#counted || capture !== null) return this.#req.pipe(new CountedBody(this.#counted ? this.#ctx.maxBodyBytes : Number.POSITIVE_INFINITY, capture));
    return this.#req;
  }

  // ── UpstreamHandler ──

  onRequestStart(controller: UpstreamController): void {
    this.controller = controller;
    // The client left (or a drain aborted us) while the request waited for a pool connection.
    if (this.#state === DONE) controller.abort(new Error('client closed'));
  }

  onResponseStart(controller: UpstreamController, statusCode: number, headers: string[], statusMessage: string): void {
    if (this.#state !== PENDING) return;
    const out = downstreamResponseHeaders(headers);
    if (this.#setCookie !== null) out.push('set-cookie', this.#setCookie);
    const capture = this.#capture;
    if (capture !== null) {
      capture.status = statusCode;
      capture.responseHeaders = headers;
    }
    const u = this.#upstream;
    if (u !== null) u.failures = 0;
    try {
      // HTTP/2 has no reason phrase (RFC 9113 §8.3.2).
      if (this.#h2) this.#res.writeHead(statusCode, out);
      else this.#res.writeHead(statusCode, statusMessage || undefined, out);
    } catch {
      // Invalid header bytes from the application; nothing was written yet.
      controller.abort(new Error('invalid upstream response head'));
      return;
    }
    this.#state = STREAMING;
    this.#status = statusCode;
  }

  onResponseData(controller: UpstreamController, chunk: Buffer): void {
    if (this.#state !== STREAMING) return;
    this.#capture?.responseChunk(chunk);
    if (!this.#res.write(chunk)) {
      // Backpressure: stop reading the upstream socket until the client socket drains.
      controller.pause();
      this.#res.once('drain', onResponseDrain);
    }
  }

  onResponseEnd(): void {
    if (this.#state !== STREAMING) return;
    this.#res.end();
    this.#finish();
    // After the live answer is complete: the copies never hold it up.
    if (this.#capture !== null) this.#ctx.mirror.submit(this.#capture);
  }

  onResponseError(_controller: UpstreamController, err: Error): void {
    if (this.#state === DONE) return;
    if (this.#state === STREAMING) {
      // The head is out: the only honest signal left is cutting the connection.
      this.#error = (err as { code?: string }).code === UPSTREAM_ERRORS.bodyTimeout ? 'timeout' : 'reset';
      this.#cut();
      this.#finish();
      return;
    }
    const u = this.#upstream as Upstream;
    if ((err as { code?: string }).code === BODY_TOO_LARGE) {
      this.#fail(413, `the request body is larger than ${this.#ctx.maxBodyBytes} bytes`, undefined);
      return;
    }
    const f = classifyUpstreamError(err);
    if (f.report) this.#ctx.reportFailure(u, `${f.text} (${(err as { code?: string }).code ?? 'error'})`);
    const retrySafe = !this.#hasBody && RETRYABLE_METHODS.has(this.#req.method ?? '');
    if (retrySafe && !this.#staleRetried && (err as { [kStaleConnection]?: boolean })[kStaleConnection] === true && !u.closed) {
      // A kept-alive connection the upstream had closed as the request went out: send it again to
      // the same instance on a new connection, once. Like nginx with cached connections, this does
      // not use up the retry on another instance.
      this.#staleRetried = true;
      this.controller = null;
      this.#dispatch(u, true);
      return;
    }
    if (f.retryable && !this.#retried && retrySafe) {
      const other = this.#route.pick(this.#ctx.health, u);
      if (other !== null) {
        this.#retried = true;
        this.#upstream = null;
        this.#ctx.upstreams.release(u);
        this.controller = null;
        this.#dispatch(other);
        return;
      }
    }
    this.#fail(f.status, `upstream ${u.id} ${f.text}`, f.kind);
  }

  // ── client side ──

  /** The client connection closed (or the response finished: then we are already DONE). */
  clientClosed(): void {
    if (this.#state === DONE) return;
    if (this.#state === PENDING) this.#status = STATUS_CLIENT_CLOSED;
    this.#finish();
    this.controller?.abort(new Error('client closed'));
  }

  /** Drain deadline or shutdown: cut the exchange now. */
  abort(_reason: string): void {
    if (this.#state === DONE) return;
    if (this.#state === PENDING) this.#status = 502;
    this.#error = 'reset';
    this.#finish();
    this.controller?.abort(new Error('aborted by router'));
    this.#cut();
  }

  /**
   * The honest signal that a response will not complete: the connection cut (HTTP/1.1), or on
   * HTTP/2 a reset of this stream alone (RST_STREAM INTERNAL_ERROR, RFC 9113 §8.1) so the
   * connection's other streams carry on.
   */
  #cut(): void {
    const stream = this.#h2 ? (this.#res as unknown as { stream?: { close(code: number): void; destroyed: boolean } }).stream : undefined;
    if (stream !== undefined && !stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
    else this.#res.destroy();
  }

  #fail(status: number, detail: string, kind: ProxyErrorKind | undefined): void {
    const res = this.#res;
    this.#status = status;
    this.#error = kind;
    if (res.headersSent || res.destroyed) {
      res.destroy();
    } else {
      const body = failureBody(status, detail);
      // A request body we did not (fully) read would be misparsed as the next request.
      const close = this.#hasBody && !this.#req.complete && !this.#h2;
      res.writeHead(status, close
        ? { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' }
        : { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#state === DONE) return;
    this.#state = DONE;
    this.#res[kExchange] = undefined;
    const u = this.#upstream;
    if (u !== null) {
      this.#upstream = null;
      this.#ctx.upstreams.release(u);
    }
    const durationMs = performance.now() - this.#startedAt;
    const route = this.#route;
    this.#ctx.stats.record(this.#listener, route.color, this.#status, durationMs, this.#error);
    const hook = this.#ctx.onRequest;
    if (hook !== undefined) {
      const h = this.#req.headers;
      const r: RequestRecord = { listener: this.#listener, color: route.color, version: route.version, method: this.#req.method ?? '', status: this.#status, durationMs, credentials: h.cookie !== undefined || h.authorization !== undefined };
      if (this.#error !== undefined) r.error = this.#error;
      const c = this.#copy;
      if (c !== null) {
        r.request = { path: this.#path, rawHeaders: this.#req.rawHeaders.slice(), body: this.#hasBody ? Buffer.concat(c.chunks, c.bytes) : null, truncated: c.truncated || (this.#hasBody && !this.#req.complete) };
        this.#copy = null;
      }
      try {
        hook(r);
      } catch { /* a metrics hook must not break the data plane */ }
    }
    // Last: may complete a drain whose report should already count this request as done.
    this.lane?.remove(this);
  }
}

/**
 * An HTTP/2 request's header lines as HTTP/1.1 needs them: pseudo-headers dropped, `:authority`
 * as Host when the client sent no Host (RFC 9113 §8.3.1), and split Cookie fields joined with
 * "; " (RFC 9113 §8.2.3: required before an HTTP/1.1 hop).
 */
export function http2ToHttp1Headers(raw: readonly string[]): string[] {
  const out: string[] = [];
  let authority: string | null = null;
  let host = false;
  let cookie: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = raw[i + 1];
      continue;
    }
    if (name === 'cookie') {
      cookie = cookie === null ? raw[i + 1] : `${cookie}; ${raw[i + 1]}`;
      continue;
    }
    if (name === 'host') host = true;
    out.push(name, raw[i + 1]);
  }
  if (!host && authority !== null) out.unshift('host', authority);
  if (cookie !== null) out.push('cookie', cookie);
  return out;
}

/**
 * The path to send upstream, and the Host to send when the client used the absolute form
 * (RFC 9112 §3.2.2: its authority replaces Host). The router checked the target already.
 */
export function targetOf(req: IncomingMessage): { path: string; host: string | undefined } {
  const url = req.url ?? '/';
  if (url.charCodeAt(0) === 47 /* / */) return { path: url, host: undefined };
  const abs = absoluteForm(url);
  return abs === null ? { path: url, host: undefined } : { path: abs.path, host: abs.host };
}

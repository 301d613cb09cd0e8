/**
 * One proxied WebSocket (any HTTP/1.1 Upgrade): the handshake is forwarded to an upstream of the
 * bound route on a fresh connection; on `101` the two sockets are joined into a raw byte tunnel.
 * It is a lane `Flight` for its whole life, so a drain can wait for it or close it.
 *
 * Owns: one tunnel. Must never: parse or alter WebSocket frames, or use the pooled keep-alive
 * connections (an upgraded socket is never returned to a pool).
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts';
import { targetOf, type ProxyContext } from './http-exchange.ts';
import type { Flight, Lane } from './lanes.ts';
import type { ListenerName, ProxyErrorKind } from './request-stats.ts';
import { classifyUpstreamError, failureBody, STATUS_TEXT } from './upstream-errors.ts';
import { UPSTREAM_ERRORS } from './upstream-pool.ts';
import type { BoundRoute, Upstream } from './upstreams.ts';

/** On a 101 these two hop-by-hop headers are the handshake itself and must reach the client. */
const KEEP_ON_UPGRADE: ReadonlySet<string> = new Set(['connection', 'upgrade']);

/** Writes a complete HTTP/1.1 error answer on a raw socket and closes it. */
export function writeRawFailure(socket: Duplex, status: number, detail: string): void {
  const body = failureBody(status, detail);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  endSoon(socket);
}

/** End after flushing what is queued (net.Socket#destroySoon), for any Duplex. */
function endSoon(s: Duplex): void {
  if (s.destroyed) return;
  const soon = (s as { destroySoon?: () => void }).destroySoon;
  if (typeof soon === 'function') soon.call(s);
  else s.end();
}

function headBlock(statusLine: string, headers: string[]): string {
  let s = `${statusLine}\r\n`;
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${s}\r\n`;
}

export interface TunnelTimeouts {
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

export class WebSocketTunnel implements Flight {
  readonly kind = 'ws' as const;
  lane: Lane | null = null;
  prev: Flight | null = null;
  next: Flight | null = null;

  readonly #ctx: ProxyContext;
  readonly #timeouts: TunnelTimeouts;
  readonly #listener: ListenerName;
  readonly #route: BoundRoute;
  readonly #req: IncomingMessage;
  readonly #client: Duplex;
  readonly #head: Buffer;
  readonly #headers: string[];
  readonly #path: string;
  readonly #startedAt: number;
  #upstream: Upstream | null = null;
  #upReq: ClientRequest | null = null;
  #upSocket: Duplex | null = null;
  #timer: NodeJS.Timeout | null = null;
  #retried = false;
  #recorded = false;
  #done = false;

  constructor(ctx: ProxyContext, timeouts: TunnelTimeouts, listener: ListenerName, route: BoundRoute, req: IncomingMessage, client: Duplex, head: Buffer, startedAt: number) {
    this.#ctx = ctx;
    this.#timeouts = timeouts;
    this.#listener = listener;
    this.#route = route;
    this.#req = req;
    this.#client = client;
    this.#head = head;
    this.#startedAt = startedAt;
    const target = targetOf(req);
    this.#path = target.path;
    const remote = req.socket.remoteAddress;
    const h = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, remote, (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : ctx.proto[listener], { trusted: ctx.trustedProxies.has(remote), host: target.host });
    // Upgrade is hop-by-hop, so it was stripped; a proxy re-sends it for the next hop (RFC 9110 §7.8).
    h.push('connection', 'upgrade', 'upgrade', String(req.headers.upgrade ?? 'websocket'));
    this.#headers = h;
  }

  start(lane: Lane, first: Upstream): void {
    lane.add(this);
    this.#client.on('error', () => this.#close(true));
    this.#client.on('close', () => this.#close(false));
    this.#connect(first);
  }

  #connect(u: Upstream): void {
    this.#upstream = u;
    const upReq = httpRequest({
      host: u.host,
      port: u.port,
      method: this.#req.method,
      path: this.#path,
      headers: this.#headers,
      agent: false, // a fresh connection: it becomes the tunnel
      setHost: false, // Host comes from the client, like for plain requests
    });
    this.#upReq = upReq;
    this.#setTimer(this.#timeouts.connectTimeoutMs, 'connect');
    upReq.on('socket', (s) => {
      s.once('connect', () => this.#setTimer(this.#timeouts.responseTimeoutMs, 'response'));
    });
    upReq.on('error', (err) => this.#upstreamFailed(u, err));
    upReq.on('upgrade', (res, socket, head) => this.#upgraded(res, socket, head));
    upReq.on('response', (res) => this.#refused(res));
    upReq.end();
  }

  #setTimer(ms: number, phase: 'connect' | 'response'): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      const err = Object.assign(new Error(`${phase} timeout`), { code: phase === 'connect' ? UPSTREAM_ERRORS.connectTimeout : UPSTREAM_ERRORS.headersTimeout });
      this.#upReq?.destroy(err);
    }, ms);
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #upstreamFailed(u: Upstream, err: Error): void {
    this.#clearTimer();
    if (this.#done || this.#upSocket !== null) return;
    const f = classifyUpstreamError(err);
    if (f.report) this.#ctx.reportFailure(u, `${f.text} (${(err as { code?: string }).code ?? 'error'})`);
    if (f.retryable && !this.#retried) {
      const other = this.#route.pick(this.#ctx.health, u);
      if (other !== null) {
        this.#retried = true;
        this.#connect(other);
        return;
      }
    }
    this.#record(f.status, f.kind);
    writeRawFailure(this.#client, f.status, `upstream ${u.id} ${f.text}`);
    this.#finish(); // the client socket closes itself once the answer is flushed
  }

  #upgraded(res: IncomingMessage, up: Duplex, upHead: Buffer): void {
    this.#clearTimer();
    const client = this.#client;
    if (this.#done || !client.writable) {
      up.destroy();
      this.#close(true);
      return;
    }
    if (this.#upstream !== null) this.#upstream.failures = 0;
    this.#upSocket = up;
    this.#record(101, undefined);
    client.write(headBlock(`HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}`, downstreamResponseHeaders(res.rawHeaders, KEEP_ON_UPGRADE)));
    if (upHead.length > 0) client.write(upHead);
    if (this.#head.length > 0) up.write(this.#head);
    (up as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
    (client as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
    // pipe() carries backpressure both ways; either side ending ends the tunnel.
    up.pipe(client);
    client.pipe(up);
    up.on('error', () => this.#close(true));
    up.on('close', () => this.#close(false));
  }

  /** The application answered the handshake without upgrading (401, 404, …): pass that answer on. */
  #refused(res: IncomingMessage): void {
    this.#clearTimer();
    const client = this.#client;
    this.#record(res.statusCode ?? 502, undefined);
    if (this.#done || !client.writable) {
      res.destroy();
      this.#close(true);
      return;
    }
    // Framing: Node de-chunked the body, so it is delimited by closing the connection instead.
    const raw = downstreamResponseHeaders(res.rawHeaders);
    const headers: string[] = [];
    for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() !== 'content-length') headers.push(raw[i], raw[i + 1]);
    headers.push('connection', 'close');
    client.write(headBlock(`HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ''}`, headers));
    res.pipe(client); // ends the client socket after the body
    res.on('error', () => this.#close(true));
    res.on('end', () => this.#close(false));
  }

  #record(status: number, error: ProxyErrorKind | undefined): void {
    if (this.#recorded) return;
    this.#recorded = true;
    // Latency of a WebSocket is its handshake; its lifetime is not a latency.
    const durationMs = performance.now() - this.#startedAt;
    const route = this.#route;
    this.#ctx.stats.record(this.#listener, route.color, status, durationMs, error);
    const hook = this.#ctx.onRequest;
    if (hook !== undefined) {
      try {
        hook(error === undefined
          ? { listener: this.#listener, color: route.color, version: route.version, method: this.#req.method ?? 'GET', status, durationMs }
          : { listener: this.#listener, color: route.color, version: route.version, method: this.#req.method ?? 'GET', status, durationMs, error });
      } catch { /* a metrics hook must not break the data plane */ }
    }
  }

  /** Drain deadline or shutdown: both sockets are destroyed (clients see the connection drop). */
  abort(_reason: string): void {
    this.#close(true);
  }

  /** Ends the tunnel: `hard` destroys both sockets; otherwise pending bytes are flushed first. */
  #close(hard: boolean): void {
    if (this.#done && !hard) return;
    this.#finish();
    const up = this.#upSocket;
    if (hard) {
      this.#client.destroy();
      up?.destroy();
      this.#upReq?.destroy();
      return;
    }
    endSoon(this.#client);
    if (up !== null) endSoon(up);
    else this.#upReq?.destroy();
  }

  /** Leaves the lane and records the exchange; idempotent. */
  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearTimer();
    this.#record(502, 'reset'); // only counts if the handshake never finished
    this.lane?.remove(this);
  }
}

/**
 * Keep-alive HTTP/1.1 connections to one upstream target, and the exchange of one request on one
 * of them: the router's upstream client.
 *
 * Why not a general-purpose client: measured on the benchmark machine, the upstream half of a
 * proxied request cost ~20 µs of CPU through undici's Pool (wasm parser, request objects, its queue)
 * against ~10 µs here, and that half decided the router's throughput (docs/benchmarks.md). What a
 * proxy needs is narrow: forward an already-validated request, stream the answer back. Responses
 * are parsed by Node's own HTTP parser (llhttp, the parser behind `node:http`), in strict mode, so
 * framing (Content-Length, chunked, close-delimited, HEAD/204/304, 1xx) is decided by the same
 * code that parses the client side; nothing here parses HTTP by hand.
 *
 * Owns: sockets to one target, request serialization and body framing, response parsing, the
 * connect/response/idle timeouts, and whether a connection may carry another request.
 * Must never: reuse a connection whose response was not cleanly complete (extra bytes, early
 * answer to an unfinished body, parse error, `Connection: close`), or call a handler after abort.
 */
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { HTTPParser, type NodeHttpParser } from './llhttp.ts';

const { kOnMessageBegin, kOnHeaders, kOnHeadersComplete, kOnBody, kOnMessageComplete } = HTTPParser;
/** Size of the read buffer shared by all upstream connections (a read takes at most this much). */
const READ_BUFFER_BYTES = 64 * 1024;
const READ_BUFFER = Buffer.allocUnsafe(READ_BUFFER_BYTES);
/** Passed to the parser for async_hooks, as `node:http` passes its own resource object. */
const PARSER_RESOURCE = Object.freeze({ type: 'CUTOVER_UPSTREAM' });

// ── the interface the router's exchanges speak (shaped like undici's dispatch handlers) ──

export interface UpstreamRequest {
  method: string;
  /** Origin-form target (`/path?query`), already validated by the client-side parser. */
  path: string;
  /** Flat `[name, value, …]`, already filtered (no hop-by-hop headers) and validated. */
  headers: readonly string[];
  /** Streamed with backpressure; Content-Length framed when the headers carry one, else chunked. */
  body: Readable | null;
}

/** Handed to the handler; every method is a no-op once the attempt is over. */
export interface UpstreamController {
  /** Stop reading the upstream socket (client-side backpressure). */
  pause(): void;
  resume(): void;
  /** Cut the attempt: its connection is destroyed and the handler hears nothing more. */
  abort(reason: Error): void;
}

export interface UpstreamHandler {
  onRequestStart(c: UpstreamController): void;
  /** Final response head; `headers` is the raw flat list as received. */
  onResponseStart(c: UpstreamController, statusCode: number, headers: string[], statusMessage: string): void;
  onResponseData(c: UpstreamController, chunk: Buffer): void;
  onResponseEnd(c: UpstreamController): void;
  /** The attempt failed (before or after the head); `err.code` says how (see `UPSTREAM_ERRORS`). */
  onResponseError(c: UpstreamController, err: Error): void;
}

/** Error codes of this module (system codes such as ECONNREFUSED/ECONNRESET pass through as they are). */
export const UPSTREAM_ERRORS = {
  connectTimeout: 'CUTOVER_UPSTREAM_CONNECT_TIMEOUT',
  headersTimeout: 'CUTOVER_UPSTREAM_HEADERS_TIMEOUT',
  bodyTimeout: 'CUTOVER_UPSTREAM_BODY_TIMEOUT',
  headersOverflow: 'CUTOVER_UPSTREAM_HEADERS_OVERFLOW',
  /** The connection closed before the response was complete. */
  closed: 'CUTOVER_UPSTREAM_CLOSED',
  /** The response could not be parsed, or was not a usable answer (e.g. an unasked-for 101). */
  invalidResponse: 'CUTOVER_UPSTREAM_INVALID_RESPONSE',
  /** The pool was closing or destroyed: nothing was sent. */
  poolClosed: 'CUTOVER_UPSTREAM_POOL_CLOSED',
} as const;

/**
 * Set (true) on an error when a kept-alive connection, reused for this request, was reset or
 * closed before any byte of the answer: most likely the upstream closed it while idle as the
 * request went out (RFC 9112 §9.3.1), not a failing instance. Retry-safe requests may be sent
 * again on a fresh connection (`dispatch(…, { fresh: true })`).
 */
export const kStaleConnection = 'staleConnection';

/** Connection-level failures that, on a reused connection before any answer, mean "stale". */
const STALE_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', UPSTREAM_ERRORS.closed]);

function upstreamError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

export interface UpstreamPoolOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  /** Time to the response head, and the longest silence while a response is in progress. */
  responseTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  keepAliveMs: number;
  /** Largest response head accepted (then the attempt fails with `headersOverflow`). */
  maxHeaderBytes: number;
  /**
   * The upstream sent bytes beyond a complete answer (more than its Content-Length said, data
   * after `Connection: close`, or on an idle connection). The answer itself is delivered; the
   * connection is closed, never reused. For logging: must be cheap and must not throw.
   */
  onExtraBytes?: (detail: string) => void;
}

/** Methods whose bodiless requests get `content-length: 0`, as clients send them (RFC 9110 §8.6). */
const EXPECTS_BODY: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH']);

/** One request/response on one connection: the controller given to the handler. */
class Attempt implements UpstreamController {
  readonly handler: UpstreamHandler;
  readonly conn: Connection;
  readonly isHead: boolean;
  /** Set once the handler has heard its last callback, or the attempt was aborted. */
  over = false;
  headReceived = false;
  /** The request (head and body) has been written completely. */
  sent = false;
  /** Stops forwarding the request body (set while it streams). */
  stopBody: (() => void) | null = null;

  constructor(handler: UpstreamHandler, conn: Connection, isHead: boolean) {
    this.handler = handler;
    this.conn = conn;
    this.isHead = isHead;
  }

  pause(): void {
    if (!this.over) this.conn.socket.pause();
  }

  resume(): void {
    if (!this.over) this.conn.socket.resume();
  }

  abort(_reason: Error): void {
    if (this.over) return;
    this.over = true;
    this.stopBody?.();
    this.conn.destroy();
  }
}

/** One upstream socket and its parser. */
class Connection {
  readonly socket: Socket;
  readonly #pool: UpstreamPool;
  readonly #parser: NodeHttpParser;
  attempt: Attempt | null = null;
  /** Taken from the idle list: it carried an earlier exchange. */
  reused = false;
  #connected = false;
  #destroyed = false;
  /** The current response is complete (set by the parser; acted on after `execute` returns). */
  #complete = false;
  #informational = false;
  #keepAlive = false;
  /** Bytes beyond the response, or a message the router did not ask for: never reuse. */
  #broken = false;
  #headers: string[] | null = null;

  constructor(pool: UpstreamPool, o: UpstreamPoolOptions) {
    this.#pool = pool;
    const parser = new HTTPParser();
    parser[kOnMessageBegin] = () => this.#onMessageBegin();
    parser[kOnHeaders] = (h: string[]) => { (this.#headers ??= []).push(...h); };
    parser[kOnHeadersComplete] = (_maj: number, _min: number, h: string[] | undefined, _m: unknown, _u: unknown, status: number, text: string, upgrade: boolean, keepAlive: boolean) =>
      this.#onHeadersComplete(h, status, text, upgrade, keepAlive);
    parser[kOnBody] = (b: Buffer) => this.#onBody(b);
    parser[kOnMessageComplete] = () => this.#onMessageComplete();
    parser.initialize(HTTPParser.RESPONSE, PARSER_RESOURCE, o.maxHeaderBytes, HTTPParser.kLenientNone);
    this.#parser = parser;
    // Reads land in one buffer shared by every upstream connection (no 64 KiB allocation and
    // ArrayBuffer per read, as a 'data' stream does): each read is parsed before the next one, and
    // body bytes are copied out (#onBody), so nothing outlives its read.
    const socket = connect({ host: o.host, port: o.port, noDelay: true, onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => { this.#onData(Buffer.from(buf.buffer, buf.byteOffset, n)); return true; } } });
    this.socket = socket;
    socket.setTimeout(o.connectTimeoutMs);
    socket.on('connect', () => {
      this.#connected = true;
      socket.setTimeout(this.attempt !== null ? o.responseTimeoutMs : o.keepAliveMs);
    });
    socket.on('end', () => this.#onEnd());
    socket.on('error', (err: Error) => this.#fail(err));
    socket.on('close', () => this.#fail(upstreamError(UPSTREAM_ERRORS.closed, 'the upstream closed the connection')));
    socket.on('timeout', () => this.#onTimeout());
  }

  /** Sends `req` on this connection (fresh, or idle and taken from the pool). */
  start(req: UpstreamRequest, handler: UpstreamHandler, o: UpstreamPoolOptions): Attempt {
    const a = new Attempt(handler, this, req.method === 'HEAD');
    this.attempt = a;
    this.#complete = false;
    this.#informational = false;
    this.#keepAlive = false;
    if (this.#connected) this.socket.setTimeout(o.responseTimeoutMs);
    const body = req.body;
    let head = `${req.method} ${req.path} HTTP/1.1\r\n`;
    const h = req.headers;
    let framed = false;
    for (let i = 0; i < h.length; i += 2) {
      head += `${h[i]}: ${h[i + 1]}\r\n`;
      if (!framed && h[i].length === 14 && h[i].toLowerCase() === 'content-length') framed = true;
    }
    if (body === null) {
      if (!framed && EXPECTS_BODY.has(req.method)) head += 'content-length: 0\r\n';
      this.socket.write(`${head}\r\n`, 'latin1');
      a.sent = true;
      return a;
    }
    this.#streamBody(a, body, framed ? `${head}\r\n` : `${head}transfer-encoding: chunked\r\n\r\n`, !framed);
    return a;
  }

  /**
   * Streams the request body after `head`. The head waits for the first body byte: a body that
   * turns out malformed (the client-side parser fails it) leaves nothing half-sent upstream.
   */
  #streamBody(a: Attempt, body: Readable, head: string, chunked: boolean): void {
    const socket = this.socket;
    let pendingHead: string | null = head;
    const onDrain = () => body.resume();
    const cleanup = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      socket.off('drain', onDrain);
      a.stopBody = null;
    };
    a.stopBody = cleanup;
    const onData = (chunk: Buffer) => {
      if (a.over || this.#destroyed || chunk.length === 0) return; // (a zero-length chunk would end a chunked body)
      socket.cork();
      if (pendingHead !== null) {
        socket.write(pendingHead, 'latin1');
        pendingHead = null;
      }
      let ok: boolean;
      if (chunked) {
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
        socket.write(chunk);
        ok = socket.write('\r\n', 'latin1');
      } else ok = socket.write(chunk);
      socket.uncork();
      if (!ok) body.pause(); // backpressure: the upstream is slower than the client
    };
    const onEnd = () => {
      cleanup();
      if (a.over || this.#destroyed) return;
      if (pendingHead !== null || chunked) socket.write(`${pendingHead ?? ''}${chunked ? '0\r\n\r\n' : ''}`, 'latin1');
      pendingHead = null;
      a.sent = true;
    };
    const onError = (err: Error) => {
      cleanup();
      this.#failAttempt(a, err);
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    socket.on('drain', onDrain);
  }

  // ── parser callbacks (inside `execute`/`finish`; never throw from them) ──

  #onMessageBegin(): void {
    // A second message after the answer: bytes the router did not ask for.
    if (this.#complete || this.attempt === null) {
      if (!this.#broken) this.#extraBytes('a second response nobody asked for');
      this.#broken = true;
    }
    this.#headers = null; // (trailers of the previous message arrive through kOnHeaders too)
  }

  #onHeadersComplete(raw: string[] | undefined, status: number, text: string, upgrade: boolean, keepAlive: boolean): number {
    let headers = raw;
    if (headers === undefined) {
      headers = this.#headers ?? [];
      this.#headers = null;
    }
    const a = this.attempt;
    if (a === null || a.over || this.#broken) {
      this.#broken = true;
      return 1;
    }
    if (status < 200 && status !== 101) {
      // 100 Continue, 103 Early Hints …: informational; the final answer follows.
      this.#informational = true;
      return 0;
    }
    if (status === 101 || upgrade) {
      this.#broken = true;
      this.#failAttempt(a, upstreamError(UPSTREAM_ERRORS.invalidResponse, 'the upstream switched protocols without being asked'));
      return 1;
    }
    this.#keepAlive = keepAlive;
    a.headReceived = true;
    try {
      a.handler.onResponseStart(a, status, headers, text);
    } catch { /* handlers do not throw; a bug there must not corrupt the parser */ }
    return a.isHead ? 1 : 0;
  }

  #onBody(b: Buffer): void {
    const a = this.attempt;
    if (a === null || a.over || !a.headReceived) return;
    try {
      // A copy: `b` is a view of the shared read buffer, and the handler may queue it.
      a.handler.onResponseData(a, Buffer.from(b));
    } catch { /* see above */ }
  }

  #onMessageComplete(): void {
    if (this.#informational) {
      this.#informational = false;
      return;
    }
    this.#complete = true;
  }

  // ── socket events ──

  #onData(d: Buffer): void {
    const a = this.attempt;
    if (a === null) {
      // Data on an idle connection: the upstream is out of step with us.
      this.#extraBytes(`${d.length} byte(s) on an idle connection`);
      this.destroy();
      return;
    }
    const ret = this.#parser.execute(d);
    if (ret instanceof Error && this.#complete) {
      // The answer was complete and then more came (a Content-Length shorter than the body, data
      // after `Connection: close`): the client gets the complete answer, as nginx does ("upstream
      // sent more data than specified"), the extra bytes are dropped with the connection, and it is
      // reported — before, the whole answer was cut and the client got an empty reply.
      this.#broken = true;
      this.#extraBytes(`bytes after a complete response (${(ret as { code?: string }).code ?? 'parse error'})`);
      this.#completeAttempt(a);
      return;
    }
    if (ret instanceof Error) {
      this.#broken = true;
      const overflow = (ret as { code?: string }).code === 'HPE_HEADER_OVERFLOW';
      this.#failAttempt(a, upstreamError(overflow ? UPSTREAM_ERRORS.headersOverflow : UPSTREAM_ERRORS.invalidResponse, overflow ? 'response head too large' : `invalid response (${(ret as { code?: string }).code ?? 'parse error'})`));
      return;
    }
    if (this.#complete) this.#completeAttempt(a);
  }

  #onEnd(): void {
    const a = this.attempt;
    if (a !== null && !a.over && a.headReceived && !this.#complete) {
      // A close-delimited body ends here (the parser decides whether that is a complete answer).
      const ret = this.#parser.finish();
      if (!(ret instanceof Error) && this.#complete) {
        this.#completeAttempt(a);
        return;
      }
    }
    this.#fail(upstreamError(UPSTREAM_ERRORS.closed, 'the upstream closed the connection'));
  }

  #onTimeout(): void {
    const a = this.attempt;
    if (a === null) {
      this.destroy(); // idle (or never used) past keepAliveMs
      return;
    }
    const err = !this.#connected
      ? upstreamError(UPSTREAM_ERRORS.connectTimeout, 'connect timeout')
      : a.headReceived
        ? upstreamError(UPSTREAM_ERRORS.bodyTimeout, 'response body timeout')
        : upstreamError(UPSTREAM_ERRORS.headersTimeout, 'response timeout');
    this.#failAttempt(a, err);
  }

  #extraBytes(detail: string): void {
    try {
      this.#pool.onExtraBytes?.(detail);
    } catch { /* a log hook must not break the data plane */ }
  }

  #completeAttempt(a: Attempt): void {
    this.attempt = null;
    // Reusable only after a clean, complete exchange: the whole request went out, nothing extra came.
    const reusable = this.#keepAlive && a.sent && !this.#broken && !this.#destroyed;
    // Answered before the whole request went out: stop sending it (the connection is not reused).
    a.stopBody?.();
    if (reusable) this.#pool.release(this);
    else this.destroy();
    if (a.over) return;
    a.over = true;
    try {
      a.handler.onResponseEnd(a);
    } catch { /* see above */ }
  }

  /** Fails the current attempt (if any) and closes the connection. */
  #fail(err: Error): void {
    const a = this.attempt;
    if (a !== null) this.#failAttempt(a, err);
    else this.destroy();
  }

  #failAttempt(a: Attempt, err: Error): void {
    if (this.attempt === a) this.attempt = null;
    a.stopBody?.();
    this.destroy();
    if (a.over) return;
    a.over = true;
    if (this.reused && !a.headReceived && STALE_CODES.has((err as { code?: string }).code ?? '')) Object.assign(err, { [kStaleConnection]: true });
    try {
      a.handler.onResponseError(a, err);
    } catch { /* see above */ }
  }

  /** Closes the socket for good; the pool forgets the connection. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.socket.destroy();
    this.#pool.forget(this);
    const parser = this.#parser;
    // Possibly inside one of its own callbacks: free it once the stack has unwound.
    setImmediate(() => parser.close());
    const a = this.attempt;
    if (a !== null) {
      this.attempt = null;
      if (!a.over) {
        a.over = true;
        try {
          a.handler.onResponseError(a, upstreamError(UPSTREAM_ERRORS.poolClosed, 'the upstream pool was destroyed'));
        } catch { /* see above */ }
      }
    }
  }
}

/**
 * Keep-alive connections to one target: idle ones are reused most-recent first (the least likely
 * to have been closed by the upstream), a new one is opened when none is idle (no upper bound,
 * like a browser-less proxy: concurrency is bounded by the clients).
 */
export class UpstreamPool {
  readonly #o: UpstreamPoolOptions;
  readonly #idle: Connection[] = [];
  readonly #all = new Set<Connection>();
  #closing = false;
  #onEmpty: (() => void) | null = null;

  readonly onExtraBytes: ((detail: string) => void) | undefined;

  constructor(o: UpstreamPoolOptions) {
    this.#o = o;
    this.onExtraBytes = o.onExtraBytes;
  }

  /**
   * Sends `req`; the handler hears `onRequestStart` synchronously, then the outcome. `fresh`:
   * on a new connection, never an idle one (the retry of a request that met a stale connection).
   */
  dispatch(req: UpstreamRequest, handler: UpstreamHandler, opts?: { fresh?: boolean }): void {
    if (this.#closing) {
      const dead: UpstreamController = { pause() {}, resume() {}, abort() {} };
      handler.onRequestStart(dead);
      handler.onResponseError(dead, upstreamError(UPSTREAM_ERRORS.poolClosed, 'the upstream pool is closed'));
      return;
    }
    let conn = opts?.fresh === true ? undefined : this.#idle.pop();
    if (conn === undefined) {
      conn = new Connection(this, this.#o);
      this.#all.add(conn);
    } else conn.reused = true;
    const a = conn.start(req, handler, this.#o);
    handler.onRequestStart(a);
  }

  /** A connection finished a clean exchange and may carry another. */
  release(conn: Connection): void {
    if (this.#closing) {
      conn.destroy();
      return;
    }
    const socket = conn.socket;
    // Paused for a slow client while the last bytes of its answer came in: an idle connection
    // must read, or it would never see the upstream close it.
    if (socket.isPaused()) socket.resume();
    socket.setTimeout(this.#o.keepAliveMs);
    this.#idle.push(conn);
  }

  forget(conn: Connection): void {
    this.#all.delete(conn);
    const i = this.#idle.lastIndexOf(conn);
    if (i !== -1) this.#idle.splice(i, 1);
    if (this.#all.size === 0 && this.#onEmpty !== null) {
      const done = this.#onEmpty;
      this.#onEmpty = null;
      done();
    }
  }

  /** Connections open (idle or busy). */
  get size(): number {
    return this.#all.size;
  }

  /** Refuses new requests, closes idle connections now and busy ones when their exchange ends. */
  close(): Promise<void> {
    this.#closing = true;
    for (const c of [...this.#idle]) c.destroy();
    if (this.#all.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.#onEmpty;
      this.#onEmpty = () => { prev?.(); resolve(); };
    });
  }

  /** Closes every connection now; exchanges in progress fail with `poolClosed`. */
  destroy(): Promise<void> {
    this.#closing = true;
    for (const c of [...this.#all]) c.destroy();
    return Promise.resolve();
  }
}

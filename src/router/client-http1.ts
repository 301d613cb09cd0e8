/**
 * Client connections of a plain HTTP/1.1 listener, parsed on the same llhttp binding the upstream
 * side uses (llhttp.ts), so that the common request — a complete bodiless HTTP/1.1 head in one
 * read — is proxied without node:http's IncomingMessage and ServerResponse streams (issue #12:
 * they were about half of the router's CPU per request). Everything else is served by node:http
 * exactly as before: at a request boundary the connection, with the bytes of that request, is
 * handed to the listener's `http.Server` (its own connection listener), which parses them again
 * from the first byte and keeps the connection from then on.
 *
 * Handed over (from that request on): a head split over reads (slow clients: node's
 * `headersTimeout` applies), pipelined requests, any request with a body, Content-Length,
 * Transfer-Encoding, Expect or Upgrade, HTTP/1.0, `Connection: close`, more header lines than
 * `maxHeaderCount`, a head llhttp refuses (node:http refuses it the same way and says why), and a
 * head the router's own checks refuse (`accepts`: request guard, ACME; node:http answers it).
 *
 * Owns: reading and framing on connections it has not handed over; the response head (status
 * line, Date when the upstream sent none, Connection/Keep-Alive, chunked framing when there is
 * no Content-Length), one write per response where the answer is complete in one read.
 * Must never: answer a request out of order, hand over a connection with a response in flight,
 * write a header value with bytes node:http would refuse, or keep a connection whose answer was cut.
 */
import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { HTTPParser, HTTP_METHODS, type NodeHttpParser } from './llhttp.ts';

const { kOnMessageBegin, kOnHeaders, kOnHeadersComplete, kOnBody, kOnMessageComplete } = HTTPParser;
const PARSER_RESOURCE = Object.freeze({ type: 'CUTOVER_CLIENT' });

export interface ClientHttp1Options {
  maxHeaderBytes: number;
  /** More header lines than this: node:http serves the request (and the guard answers 431). */
  maxHeaderCount: number;
  /** Idle time between requests, as node:http's `keepAliveTimeout`. */
  keepAliveTimeoutMs: number;
  /** Time for the first request's head on a new connection, as node:http's `headersTimeout` (0: none). */
  headersTimeoutMs: number;
  /** The router's own checks; false: node:http serves (and refuses) this request instead. */
  accepts(req: Http1Request): boolean;
  onRequest(req: Http1Request, res: Http1Response): void;
  /** True while the router retires: every answer says `Connection: close`. */
  retiring(): boolean;
}

/** Header names of which node:http keeps only the first line in `req.headers` (node's `_addHeaderLine`). */
const FIRST_WINS: ReadonlySet<string> = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
  'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
]);

/** `req.headers` as node:http builds it from the raw lines (lower-case names, repeated lines joined). */
export function headersObject(raw: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    const prev = out[name];
    if (prev === undefined) out[name] = name === 'set-cookie' ? [value] : value;
    else if (name === 'set-cookie') (prev as string[]).push(value);
    else if (FIRST_WINS.has(name)) continue;
    else out[name] = `${prev as string}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

/** A complete bodiless request read by this module: the parts of `IncomingMessage` the router reads. */
export class Http1Request {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly socket: Socket;
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;
  readonly httpVersion = '1.1';
  /** The whole request has been read (it has no body). */
  readonly complete = true;
  #headers: Record<string, string | string[]> | null = null;

  constructor(method: string, url: string, rawHeaders: string[], socket: Socket) {
    this.method = method;
    this.url = url;
    this.rawHeaders = rawHeaders;
    this.socket = socket;
  }

  get headers(): Record<string, string | string[]> {
    return (this.#headers ??= headersObject(this.rawHeaders));
  }

  /** This request, typed as what the router's request handling reads (the fields above). */
  asIncoming(): IncomingMessage {
    return this as unknown as IncomingMessage;
  }
}

/** RFC 9110 §5.6.2 token: a header name node:http would accept. */
const TOKEN = /^[\^_`a-zA-Z\-0-9!#$%&'*+.|~]+$/;
/** Bytes node:http refuses in a header value (its `checkInvalidHeaderChar`). */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** `Date` header value, recomputed at most once a second (one coarse clock for every response). */
let dateSecond = -1;
let dateValue = '';
function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

type Listener = (this: Http1Response) => void;

/** Body bytes up to this size are copied next to the head and go out in one write (larger ones are written as they are, corked with it). */
const ONE_WRITE_MAX_BYTES = 16 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * The answer to one `Http1Request`: the parts of `ServerResponse` the router uses (writeHead,
 * write, end, destroy, `close` and `drain`). The head is written with the first body bytes, and
 * a response whose end comes in the same tick goes out in one write.
 */
export class Http1Response {
  readonly #conn: Http1Connection;
  readonly #noBody: boolean;
  headersSent = false;
  destroyed = false;
  finished = false;
  /** False: the connection closes after this answer (`Connection: close`). */
  shouldKeepAlive = true;
  #head: string | null = null;
  #chunked = false;
  /** No content may follow this head (HEAD, 1xx, 204, 304): body writes are dropped. */
  #bodyless = false;
  #corked = false;
  #onClose: Listener | null = null;
  #onDrain: Listener | null = null;

  constructor(conn: Http1Connection, isHead: boolean) {
    this.#conn = conn;
    this.#noBody = isHead;
  }

  /** `writeHead(status, reason?, flatHeaders)` or `writeHead(status, {name: value})`. Throws on a header node:http would refuse; nothing is written then. */
  writeHead(status: number, reason?: string | readonly string[] | Record<string, string | number>, headers?: readonly string[] | Record<string, string | number>): this {
    if (this.headersSent) throw new Error('the response head was already written');
    let text: string | undefined;
    let h: readonly string[] | Record<string, string | number> | undefined;
    if (typeof reason === 'string' || reason === undefined) {
      text = reason;
      h = headers;
    } else h = reason;
    const flat: string[] = [];
    if (Array.isArray(h)) flat.push(...(h as readonly string[]));
    else if (h !== undefined) for (const k of Object.keys(h)) flat.push(k, String((h as Record<string, string | number>)[k]));
    let head = `HTTP/1.1 ${status} ${text ?? STATUS_CODES[status] ?? 'unknown'}\r\n`;
    let length = false;
    let date = false;
    for (let i = 0; i < flat.length; i += 2) {
      const name = flat[i];
      const value = flat[i + 1];
      if (!TOKEN.test(name) || INVALID_VALUE.test(value)) throw Object.assign(new TypeError(`invalid response header ${JSON.stringify(name)}`), { code: 'ERR_INVALID_CHAR' });
      const n = name.length;
      if (n === 14 && name.toLowerCase() === 'content-length') length = true;
      else if (n === 4 && name.toLowerCase() === 'date') date = true;
      else if (n === 10 && name.toLowerCase() === 'connection') {
        if (value.toLowerCase() === 'close') this.shouldKeepAlive = false;
        continue; // written below, once
      }
      head += `${name}: ${value}\r\n`;
    }
    if (!date) head += `Date: ${httpDate()}\r\n`;
    // RFC 9110 §6.4.1: no content in answers to HEAD, 1xx, 204 and 304; node:http frames the same way.
    const bodiless = this.#noBody || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (!bodiless && !length) {
      this.#chunked = true;
      head += 'Transfer-Encoding: chunked\r\n';
    }
    if (this.#conn.retiring()) this.shouldKeepAlive = false;
    head += this.shouldKeepAlive ? `Connection: keep-alive\r\nKeep-Alive: timeout=${this.#conn.keepAliveS}\r\n\r\n` : 'Connection: close\r\n\r\n';
    this.#head = head;
    this.#bodyless = bodiless;
    this.headersSent = true;
    return this;
  }

  /** Body bytes; false when the socket is full (wait for `drain`). */
  write(chunk: Buffer | string): boolean {
    if (this.destroyed || this.finished) return false;
    if (!this.headersSent) this.writeHead(200);
    const socket = this.#conn.socket;
    const head = this.#head;
    if (head !== null && !this.#chunked && !this.#corked && typeof chunk !== 'string' && chunk.length <= ONE_WRITE_MAX_BYTES) {
      // The usual answer: head and (first) body bytes in one buffer, one write, no cork.
      this.#head = null;
      if (this.#bodyless || chunk.length === 0) return socket.write(head, 'latin1');
      const buf = Buffer.allocUnsafe(head.length + chunk.length);
      buf.write(head, 0, 'latin1');
      chunk.copy(buf, head.length);
      return socket.write(buf);
    }
    if (!this.#corked) {
      this.#corked = true;
      socket.cork();
      process.nextTick(uncorkNT, this);
    }
    if (this.#head !== null) {
      socket.write(this.#head, 'latin1');
      this.#head = null;
    }
    if (this.#bodyless || chunk.length === 0) return !socket.writableNeedDrain;
    if (this.#chunked) {
      socket.write(`${Buffer.byteLength(chunk).toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      return socket.write('\r\n', 'latin1');
    }
    return socket.write(chunk);
  }

  end(chunk?: Buffer | string): this {
    if (this.destroyed || this.finished) return this;
    if (chunk !== undefined && chunk.length > 0) this.write(chunk);
    else if (this.#head !== null || !this.headersSent) this.write(EMPTY);
    const socket = this.#conn.socket;
    if (this.#chunked && !this.#bodyless) socket.write('0\r\n\r\n', 'latin1');
    this.finished = true;
    this.uncork();
    this.#conn.responseDone(this);
    return this;
  }

  /** @internal */
  uncork(): void {
    if (!this.#corked) return;
    this.#corked = false;
    this.#conn.socket.uncork();
  }

  /** Cuts the connection: the honest signal for an answer that will not complete. */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#conn.socket.destroy();
    return this;
  }

  on(event: 'close' | 'drain', fn: Listener): this {
    if (event === 'close') this.#onClose = fn;
    else this.#onDrain = fn;
    return this;
  }

  once(event: 'close' | 'drain', fn: Listener): this {
    return this.on(event, fn);
  }

  /** @internal The socket drained. */
  emitDrain(): void {
    const fn = this.#onDrain;
    this.#onDrain = null;
    fn?.call(this);
  }

  /** @internal The socket closed before (or after) this answer ended. */
  emitClose(): void {
    this.destroyed ||= !this.finished;
    const fn = this.#onClose;
    this.#onClose = null;
    fn?.call(this);
  }
}

function uncorkNT(res: Http1Response): void {
  res.uncork();
}

/** The head of the message being parsed. */
interface Head {
  method: string;
  url: string;
  raw: string[];
  minor: number;
  major: number;
  upgrade: boolean;
  keepAlive: boolean;
}

/** One client connection until it is handed to node:http (or closes). */
class Http1Connection {
  readonly socket: Socket;
  readonly #path: ClientHttp1;
  readonly #parser: NodeHttpParser;
  readonly keepAliveS: number;
  #res: Http1Response | null = null;
  /** Bytes that came while an answer was in flight (pipelining): looked at when it is done. */
  #pending: Buffer[] | null = null;
  #served = 0;
  #ended = false;
  #gone = false;
  // Per read: what the parser saw.
  #messages = 0;
  #completed = 0;
  #body = false;
  #head: Head | null = null;
  #partRaw: string[] | null = null;
  #partUrl = '';
  readonly #onData = (d: Buffer) => this.#data(d);
  readonly #onEnd = () => this.#end();
  readonly #onClose = () => this.#close();
  readonly #onError = () => this.socket.destroy();
  readonly #onDrain = () => this.#res?.emitDrain();
  readonly #onTimeout = () => this.#timeout();

  constructor(path: ClientHttp1, socket: Socket) {
    this.#path = path;
    this.socket = socket;
    this.keepAliveS = Math.floor(path.o.keepAliveTimeoutMs / 1000);
    const parser = new HTTPParser();
    parser[kOnMessageBegin] = () => {
      this.#messages++;
      this.#partRaw = null;
      this.#partUrl = '';
    };
    // More than 32 header lines come in parts before the head completes (as node:http reads them).
    parser[kOnHeaders] = (h: string[], url: string) => {
      (this.#partRaw ??= []).push(...h);
      this.#partUrl += url;
    };
    parser[kOnHeadersComplete] = (major: number, minor: number, raw: string[] | undefined, method: number, url: string | undefined, _s: unknown, _t: unknown, upgrade: boolean, keepAlive: boolean) => {
      this.#head = {
        method: HTTP_METHODS[method] ?? '', url: raw === undefined ? this.#partUrl + (url ?? '') : (url ?? ''),
        raw: raw ?? this.#partRaw ?? [], major, minor, upgrade, keepAlive,
      };
      return 0;
    };
    parser[kOnBody] = () => { this.#body = true; };
    parser[kOnMessageComplete] = () => { this.#completed++; };
    parser.initialize(HTTPParser.REQUEST, PARSER_RESOURCE, path.o.maxHeaderBytes, HTTPParser.kLenientNone);
    this.#parser = parser;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError);
    socket.on('drain', this.#onDrain);
    socket.on('timeout', this.#onTimeout);
    const first = path.o.headersTimeoutMs > 0 ? path.o.headersTimeoutMs : path.o.keepAliveTimeoutMs;
    if (first > 0) socket.setTimeout(first);
  }

  get idle(): boolean {
    return this.#res === null && this.#pending === null;
  }

  retiring(): boolean {
    return this.#path.o.retiring();
  }

  #data(chunk: Buffer): void {
    if (!this.idle) {
      (this.#pending ??= []).push(chunk);
      this.socket.pause();
      return;
    }
    this.#serve(chunk);
  }

  /** One read at a request boundary: exactly one complete, simple request is served here; anything else goes to node:http. */
  #serve(chunk: Buffer): void {
    this.#messages = 0;
    this.#completed = 0;
    this.#body = false;
    this.#head = null;
    const ret = this.#parser.execute(chunk);
    const h = this.#head as Head | null;
    this.#head = null;
    if (ret instanceof Error || this.#messages !== 1 || this.#completed !== 1 || this.#body || h === null || !simple(h, this.#path.o.maxHeaderCount)) {
      this.#handOff(chunk);
      return;
    }
    const req = new Http1Request(h.method, h.url, h.raw, this.socket);
    if (!this.#path.o.accepts(req)) {
      this.#handOff(chunk);
      return;
    }
    const res = new Http1Response(this, h.method === 'HEAD');
    this.#res = res;
    this.#served++;
    this.#path.o.onRequest(req, res);
  }

  /** The answer in flight ended: keep the connection for the next request, or close it. */
  responseDone(res: Http1Response): void {
    if (this.#res !== res) return;
    this.#res = null;
    if (this.#gone) return;
    if (!res.shouldKeepAlive || this.#ended) {
      this.#pending = null;
      this.socket.destroySoon();
      return;
    }
    if (this.#served === 1) this.socket.setTimeout(this.#path.o.keepAliveTimeoutMs);
    const pending = this.#pending;
    if (pending !== null) {
      this.#pending = null;
      this.socket.resume();
      this.#serve(pending.length === 1 ? pending[0] : Buffer.concat(pending));
    }
  }

  /**
   * node:http takes the connection from this request on: it gets the request's bytes again (it
   * parses them itself, from the first byte) and every later byte, through its own connection
   * listener, as if it had accepted the connection itself.
   */
  #handOff(chunk: Buffer): void {
    const socket = this.socket;
    this.#detach();
    if (socket.readableEnded) {
      // The client half-closed after bytes we cannot put back in its stream: nothing to serve.
      socket.destroy();
      return;
    }
    socket.pause();
    // node:http must read through 'data' events (its C++ consume path would skip the bytes put back).
    const handle = (socket as unknown as { _handle?: { _consumed?: boolean } | null })._handle;
    if (handle) handle._consumed = true;
    if (chunk.length > 0) socket.unshift(chunk);
    this.#path.handOff(socket);
    socket.resume();
  }

  #detach(): void {
    const socket = this.socket;
    this.#gone = true;
    this.#path.forget(this);
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('close', this.#onClose);
    socket.off('error', this.#onError);
    socket.off('drain', this.#onDrain);
    socket.off('timeout', this.#onTimeout);
    socket.setTimeout(0);
    this.#parser.close();
  }

  #end(): void {
    this.#ended = true;
    // allowHalfOpen (as node:http): an answer in flight still goes out, then the connection closes.
    if (this.idle) this.socket.destroySoon();
  }

  #timeout(): void {
    if (this.#res !== null) {
      // A slow upstream is bounded by router.responseTimeout, not by the idle timeout.
      this.socket.setTimeout(this.#path.o.keepAliveTimeoutMs);
      return;
    }
    if (this.#served === 0 && this.#pending === null) {
      // No request within headersTimeout: node:http's answer (408 through the listener's clientError).
      const socket = this.socket;
      this.#detach();
      this.#path.requestTimeout(socket);
      return;
    }
    this.socket.destroy();
  }

  #close(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#path.forget(this);
    setImmediate(() => this.#parser.close());
    const res = this.#res;
    this.#res = null;
    res?.emitClose();
  }

  /** Close now if no answer is in flight (retiring, closing). */
  closeIfIdle(): void {
    if (this.idle) this.socket.destroy();
  }
}

/** A head this module serves itself: HTTP/1.1, keep-alive, no body or body framing, no Expect/Upgrade, one Host, within the header-line limit. */
function simple(h: Head, maxHeaderCount: number): boolean {
  if (h.major !== 1 || h.minor !== 1 || h.upgrade || !h.keepAlive || h.method === '') return false;
  const raw = h.raw;
  if (raw.length > maxHeaderCount * 2) return false;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') hosts++;
        break;
      case 6:
        if (name.toLowerCase() === 'expect') return false;
        break;
      case 7:
        if (name.toLowerCase() === 'upgrade') return false;
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') return false;
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') return false;
        break;
    }
  }
  return hosts === 1;
}

/**
 * The client side of one plain `http.Server`: takes over its connection listener, serves simple
 * requests itself and hands every other connection (at a request boundary) to node:http.
 */
export class ClientHttp1 {
  readonly o: ClientHttp1Options;
  readonly #server: Server;
  readonly #nodeListener: (socket: Socket) => void;
  readonly #conns = new Set<Http1Connection>();

  constructor(server: Server, o: ClientHttp1Options) {
    this.o = o;
    this.#server = server;
    const listeners = server.listeners('connection') as ((socket: Socket) => void)[];
    if (listeners.length !== 1) throw new Error(`client-http1: expected node:http's one connection listener, found ${listeners.length}`);
    this.#nodeListener = listeners[0];
    server.removeListener('connection', this.#nodeListener);
    server.on('connection', (socket: Socket) => {
      this.#conns.add(new Http1Connection(this, socket));
    });
  }

  /** @internal */
  handOff(socket: Socket): void {
    this.#nodeListener.call(this.#server, socket);
  }

  /** @internal A new connection sent nothing within headersTimeout: node:http's 408 path. */
  requestTimeout(socket: Socket): void {
    this.#server.emit('clientError', Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket);
  }

  /** @internal */
  forget(c: Http1Connection): void {
    this.#conns.delete(c);
  }

  /** Connections still read here (not handed to node:http). */
  get size(): number {
    return this.#conns.size;
  }

  /** Closes the connections read here that have no answer in flight (node:http's `closeIdleConnections`). */
  closeIdle(): void {
    for (const c of [...this.#conns]) c.closeIfIdle();
  }

  /** Closes every connection read here (node:http's `closeAllConnections`). */
  closeAll(): void {
    for (const c of [...this.#conns]) c.socket.destroy();
  }
}

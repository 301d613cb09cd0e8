/**
 * The checks a request head must pass before anything of it reaches an upstream: framing that two
 * HTTP parsers could read differently (request smuggling, RFC 9112 §6.1 and §6.3), and the limits
 * on the head's size, header count, target length and declared body size.
 *
 * Node's llhttp parser (strict: `insecureHTTPParser` stays off) already rejects most malformed
 * heads — both Content-Length and Transfer-Encoding, duplicate or invalid Content-Length,
 * Transfer-Encoding not ending in `chunked`, obsolete line folding, bare CR or LF, spaces in
 * header names, invalid chunk sizes — before a request event exists; those reach the listener's
 * `clientError` handler. This module re-checks the framing cheaply (defence in depth: the parser's
 * behaviour is not ours to pin) and adds what llhttp lets through.
 *
 * Owns: the verdict on one request head. Must never: read the body, or allocate on the common path
 * (a GET without a body costs a few property reads).
 */
import type { IncomingMessage } from 'node:http';

export interface RequestLimits {
  /** Bytes of the request head (Node's `maxHeaderSize`); also the limit for upstream response heads. */
  maxHeaderBytes: number;
  /** Header lines per request. */
  maxHeaderCount: number;
  /** Bytes of the request target (path and query). */
  maxUrlBytes: number;
  /** Bytes of a request body; 0 = no limit. */
  maxBodyBytes: number;
  /** Time to receive the whole head; 0 = none. */
  headersTimeoutMs: number;
  /** Time to receive the whole request; 0 = none. */
  requestTimeoutMs: number;
}

export interface Rejection {
  status: 400 | 413 | 414 | 431 | 501;
  detail: string;
}

/** A valid Content-Length value: digits only (RFC 9110 §8.6), no sign, no list, no spaces. */
const CONTENT_LENGTH = /^\d{1,15}$/;

/** Why this request must not be forwarded, or null. */
export function rejectRequest(req: IncomingMessage, limits: RequestLimits): Rejection | null {
  const h = req.headers;
  const url = req.url ?? '';
  if (url.length > limits.maxUrlBytes) return { status: 414, detail: `the request target is longer than ${limits.maxUrlBytes} bytes` };
  // Node drops header lines past `maxHeadersCount` silently; the router sets it one above the limit to see them.
  if (req.rawHeaders.length > limits.maxHeaderCount * 2 && headerLines(req) > limits.maxHeaderCount) return { status: 431, detail: `more than ${limits.maxHeaderCount} header lines` };
  // Node keeps the first of repeated Host / Content-Length lines in `req.headers`; count them raw.
  // One pass over names of length 4 or 14 only: cheap on every request.
  const raw = req.rawHeaders;
  let hosts = 0;
  let lengths = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i].length;
    if (n === 4 && raw[i].toLowerCase() === 'host') hosts++;
    else if (n === 14 && raw[i].toLowerCase() === 'content-length') lengths++;
  }
  // RFC 9112 §3.2: more than one Host is a 400; the application and we could pick different ones.
  if (hosts > 1) return { status: 400, detail: 'more than one Host header' };
  if (lengths > 1) return { status: 400, detail: 'more than one Content-Length' };
  const cl = h['content-length'];
  const te = h['transfer-encoding'];
  if (te !== undefined) {
    // RFC 9112 §6.1: both framings present is a smuggling attempt or a broken client; never forward it.
    if (cl !== undefined) return { status: 400, detail: 'both Content-Length and Transfer-Encoding' };
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return { status: 400, detail: 'Transfer-Encoding in an HTTP/1.0 request' };
    const codings = te.toLowerCase();
    if (codings.trim() !== 'chunked') {
      // Only `chunked` ends the coding list (else llhttp rejected it already); other codings before
      // it would reach the application without the header that names them: refuse (RFC 9112 §6.1: 501).
      return /(^|,)\s*chunked\s*$/.test(codings)
        ? { status: 501, detail: `Transfer-Encoding "${te}" is not supported; send "chunked" only` }
        : { status: 400, detail: 'Transfer-Encoding must end with "chunked"' };
    }
  } else if (cl !== undefined) {
    if (!CONTENT_LENGTH.test(cl)) return { status: 400, detail: 'invalid Content-Length' };
    if (limits.maxBodyBytes > 0 && Number(cl) > limits.maxBodyBytes) return { status: 413, detail: `the request body is larger than ${limits.maxBodyBytes} bytes` };
  }
  return null;
}

/** Header lines of a request, without HTTP/2's pseudo-headers (`:method`, `:path`, …). */
function headerLines(req: IncomingMessage): number {
  const raw = req.rawHeaders;
  if (req.httpVersionMajor !== 2) return raw.length / 2;
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].charCodeAt(0) !== 58 /* : */) n++;
  return n;
}

/** An upgrade (WebSocket handshake) carries no body: any framing header on it is refused. */
export function rejectUpgrade(req: IncomingMessage, limits: RequestLimits): Rejection | null {
  const r = rejectRequest(req, limits);
  if (r !== null) return r;
  const cl = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0')) return { status: 400, detail: 'an upgrade request must not have a body' };
  return null;
}

/**
 * RFC 9112 §3.2.2: a server must accept the absolute form (`GET http://host/path`) and then use
 * its authority instead of Host. Upstreams get the origin form and the matching Host, so the
 * application never sees two different hosts. Returns null for the usual origin form.
 */
export function absoluteForm(url: string): { path: string; host: string } | null {
  if (url.charCodeAt(0) === 47 /* / */ || url === '*') return null;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  return { path: `${u.pathname}${u.search}`, host: u.host };
}

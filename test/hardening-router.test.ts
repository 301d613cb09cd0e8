/**
 * Hostile and malformed input at the router (issue #6). Every probe opens a raw socket, sends the
 * exact bytes, and checks three things: the router's answer (status, `connection: close`, the
 * socket closed), and that the upstream never saw the request — not its head, and never a second
 * request hidden in its body (request smuggling).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../src/lib/logger.ts';
import { Router, type RequestLimits } from '../src/router/router.ts';
import { routes, TestHealth } from './support/router.ts';

/** What the upstream saw: every request head on arrival, and whether its body completed. */
interface Seen { method: string; url: string; headers: IncomingMessage['headers']; complete: boolean; bytes: number }

interface RecordingUpstream { port: number; seen: Seen[]; close: () => Promise<void> }

async function recordingUpstream(): Promise<RecordingUpstream> {
  const seen: Seen[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const entry: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, complete: false, bytes: 0 };
    seen.push(entry);
    req.on('data', (c: Buffer) => { entry.bytes += c.length; });
    req.on('error', () => {});
    req.on('end', () => {
      entry.complete = true;
      if (req.url === '/bighead') {
        res.writeHead(200, { 'x-big': 'b'.repeat(20 * 1024) });
        res.end('big');
        return;
      }
      if (req.url === '/headers') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(req.headers));
        return;
      }
      res.end(`ok ${entry.bytes}`);
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

interface RawAnswer { status: number; head: string; body: string; closed: boolean }

/**
 * Sends `bytes` on a fresh connection and reads until the router closes it (or `waitMs` passes).
 * `closed` says the router ended the connection itself.
 */
function rawRequest(port: number, bytes: string | Buffer | (string | Buffer)[], o: { waitMs?: number; gapMs?: number } = {}): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const parts = Array.isArray(bytes) ? bytes : [bytes];
    let out = Buffer.alloc(0);
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const text = out.toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const head = split === -1 ? text : text.slice(0, split);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), head, body: split === -1 ? '' : text.slice(split + 4), closed });
    };
    const timer = setTimeout(() => finish(false), o.waitMs ?? 3_000);
    s.on('data', (d: Buffer) => { out = Buffer.concat([out, d]); });
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    s.on('connect', async () => {
      for (const p of parts) {
        if (s.destroyed) return;
        s.write(typeof p === 'string' ? Buffer.from(p, 'latin1') : p);
        if (o.gapMs) await new Promise((r) => setTimeout(r, o.gapMs));
      }
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The request a smuggler hides in a body; it must never reach the upstream. */
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: shop.example\r\n\r\n';

describe('hostile input at the router', () => {
  let up: RecordingUpstream;
  let router: Router;
  let port: number;

  async function startRouter(limits: Partial<RequestLimits> = {}, trustedProxies: string[] = []): Promise<{ router: Router; port: number }> {
    const r = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: 1_000, health: new TestHealth(), logger: silentLogger, limits, trustedProxies });
    await r.start();
    r.swap(routes({ color: 'blue', targets: [{ id: 'blue-0', host: '127.0.0.1', port: up.port }] }));
    return { router: r, port: r.addresses().live.port };
  }

  before(async () => {
    up = await recordingUpstream();
    ({ router, port } = await startRouter());
  });
  after(async () => {
    await router.close();
    await up.close();
  });

  /** Sends the bytes and asserts: `status`, connection closed, nothing reached the upstream. */
  async function refused(bytes: string, status: number, r = port): Promise<RawAnswer> {
    const before = up.seen.length;
    const a = await rawRequest(r, bytes);
    await sleep(50); // anything forwarded would have arrived by now
    assert.equal(a.status, status, `answer: ${a.head}`);
    assert.match(a.head, /\r\nconnection: close/i, 'the answer closes the connection');
    assert.ok(a.closed, 'the router closed the connection');
    assert.deepEqual(up.seen.slice(before).map((x) => `${x.method} ${x.url}`), [], 'the upstream saw no request');
    return a;
  }

  // ── framing: request smuggling (RFC 9112 §6.1, §6.3) ──
  const framing: [string, string, number][] = [
    ['Content-Length and Transfer-Encoding together', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['Transfer-Encoding before Content-Length', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['two different Content-Length values', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 48\r\n\r\nabcd${SMUGGLED}`, 400],
    ['two equal Content-Length lines', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd`, 400],
    ['a Content-Length list "4, 4"', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd`, 400],
    ['Content-Length "4x"', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd`, 400],
    ['Content-Length "-1"', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabcd`, 400],
    ['Content-Length "+4"', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd`, 400],
    ['Transfer-Encoding "gzip" (no chunked)', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n${SMUGGLED}`, 400],
    ['Transfer-Encoding "chunked, gzip" (chunked not last)', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['Transfer-Encoding "xchunked"', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['two Transfer-Encoding lines', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['Transfer-Encoding "gzip, chunked" (a coding the router does not pass on): 501', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501],
    ['Transfer-Encoding in an HTTP/1.0 request', `POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['Transfer-Encoding with obsolete line folding', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['"Transfer-Encoding :" (space before the colon)', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400],
    ['invalid chunk size "zz"', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${SMUGGLED}\r\n0\r\n\r\n`, 400],
    ['chunk size overflowing 64 bits', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabcd\r\n0\r\n\r\n`, 400],
    ['negative chunk size', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-4\r\nabcd\r\n0\r\n\r\n`, 400],
    ['bare LF inside a chunk extension', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;a\nb\r\nabcd\r\n0\r\n\r\n`, 400],
  ];
  for (const [name, bytes, status] of framing) {
    test(`framing: ${name} → ${status}, closed, nothing reaches the upstream`, () => refused(bytes, status).then(() => undefined));
  }

  // ── header syntax ──
  const syntax: [string, string][] = [
    ['obsolete line folding in a header', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n'],
    ['bare LF inside a header value', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\nX-B: c\r\n\r\n'],
    ['bare CR inside a header value', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\rX-B: c\r\n\r\n'],
    ['lines ended by bare LF', 'GET /a HTTP/1.1\nHost: x\n\n'],
    ['CR inside a header name', 'GET /a HTTP/1.1\r\nHost: x\r\nX\rA: b\r\n\r\n'],
    ['a space inside a header name', 'GET /a HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n'],
    ['NUL inside a header value', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\0c\r\n\r\n'],
    ['an HTTP/1.1 request without Host', 'GET /a HTTP/1.1\r\n\r\n'],
    ['two Host headers', 'GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n'],
    ['a request target that is not a path', 'GET a/b HTTP/1.1\r\nHost: x\r\n\r\n'],
  ];
  for (const [name, bytes] of syntax) {
    test(`header syntax: ${name} → 400, closed, nothing reaches the upstream`, () => refused(bytes, 400).then(() => undefined));
  }

  test('a chunked body that breaks after a valid chunk: the upstream sees a cut request, never a complete one, never the hidden one', async () => {
    const before = up.seen.length;
    const a = await rawRequest(port, `POST /cut HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdX0\r\n\r\n${SMUGGLED}`);
    await sleep(100);
    assert.equal(a.status, 400);
    assert.ok(a.closed);
    const seen = up.seen.slice(before);
    assert.ok(seen.every((x) => x.url !== '/smuggled'), 'the hidden request never arrives');
    assert.ok(seen.every((x) => !x.complete), 'no complete request was forwarded');
  });

  test('an absolute-form target is forwarded in origin form, with the target\'s authority as Host (RFC 9112 §3.2.2)', async () => {
    const before = up.seen.length;
    const a = await rawRequest(port, 'GET http://shop.example/headers?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n');
    assert.equal(a.status, 200);
    const seen = up.seen.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].url, '/headers?q=1');
    assert.equal(seen[0].headers.host, 'shop.example');
    assert.equal(seen[0].headers['x-forwarded-host'], 'shop.example');
  });

  test('a well-formed chunked POST and a Content-Length POST still pass (the checks refuse only what is wrong)', async () => {
    const a = await rawRequest(port, 'POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n');
    assert.equal(a.status, 200);
    assert.match(a.body, /ok 4/);
    const b = await rawRequest(port, 'POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd');
    assert.equal(b.status, 200);
    assert.match(b.body, /ok 4/);
  });

  // ── limits ──
  test('a request head over maxHeaderSize (16 KiB) → 431, nothing forwarded', async () => {
    await refused(`GET /a HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`, 431);
  });

  test('more than maxHeaderCount (100) header lines → 431 (Node would drop the extra lines silently); 100 pass', async () => {
    const lines = (n: number) => Array.from({ length: n }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
    await refused(`GET /a HTTP/1.1\r\nHost: x\r\n${lines(100)}\r\n`, 431); // 101 with Host
    const ok = await rawRequest(port, `GET /a HTTP/1.1\r\nHost: x\r\n${lines(98)}Connection: close\r\n\r\n`);
    assert.equal(ok.status, 200);
  });

  test('a request target over maxUrlLength (8 KiB) → 414, also past maxHeaderSize; nothing forwarded', async () => {
    await refused(`GET /${'a'.repeat(9 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414);
    await refused(`GET /${'a'.repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414);
  });

  test('a declared body over maxBodySize (10 MiB default) → 413 before anything is forwarded; with Expect: 100-continue no 100 is sent', async () => {
    await refused(`POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: ${10 * 1024 * 1024 + 1}\r\n\r\nabcd`, 413);
    const a = await refused(`POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: ${11 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n`, 413);
    assert.doesNotMatch(a.head, /100 Continue/);
  });

  test('a chunked body that grows past maxBodySize → 413 mid-stream; the upstream never gets a complete request', async () => {
    const small = await startRouter({ maxBodyBytes: 64 * 1024 });
    try {
      const before = up.seen.length;
      const chunk = `4000\r\n${'x'.repeat(0x4000)}\r\n`; // 16 KiB
      const a = await rawRequest(small.port, ['POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', ...Array.from({ length: 8 }, () => chunk), '0\r\n\r\n'], { gapMs: 20 });
      await sleep(100);
      assert.equal(a.status, 413, a.head);
      assert.match(a.body, /larger than 65536 bytes/);
      assert.ok(up.seen.slice(before).every((x) => !x.complete), 'no complete request was forwarded');
      // Under the limit, the same stream passes.
      const ok = await rawRequest(small.port, ['POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n', chunk, chunk, '0\r\n\r\n']);
      assert.equal(ok.status, 200);
    } finally {
      await small.router.close();
    }
  });

  test('a client too slow to send its head → 408 after headersTimeout; one too slow with its body → 408 after requestTimeout', async () => {
    const slow = await startRouter({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    try {
      const before = up.seen.length;
      const t0 = performance.now();
      const a = await rawRequest(slow.port, 'GET /a HTTP/1.1\r\nHost: x\r\nX-Slow: ', { waitMs: 5_000 });
      assert.equal(a.status, 408);
      assert.ok(a.closed);
      assert.ok(performance.now() - t0 < 2_500, `answered after ${Math.round(performance.now() - t0)} ms`);
      assert.equal(up.seen.length, before, 'a half-sent head never reaches the upstream');
      const b = await rawRequest(slow.port, 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789', { waitMs: 5_000 });
      assert.equal(b.status, 408);
      assert.ok(b.closed);
      assert.ok(up.seen.slice(before).every((x) => !x.complete), 'the cut request never completes upstream');
    } finally {
      await slow.router.close();
    }
  });

  test('an upstream response head over maxHeaderSize → 502 naming the instance', async () => {
    const a = await rawRequest(port, 'GET /bighead HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(a.status, 502);
    assert.match(a.body, /upstream blue-0 sent a response head larger than the limit/);
  });

  test('refusals are counted by status (router.rejections())', () => {
    const r = router.rejections();
    for (const s of ['400', '413', '414', '431', '501']) assert.ok((r[s] ?? 0) > 0, `no ${s} counted: ${JSON.stringify(r)}`);
  });

  // ── forwarding headers ──
  test('X-Forwarded-For/-Proto/-Host, Forwarded and X-Real-IP from an untrusted client are replaced or dropped', async () => {
    const a = await rawRequest(port, 'GET /headers HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=203.0.113.7\r\nX-Real-IP: 203.0.113.7\r\nConnection: close\r\n\r\n');
    const h = JSON.parse(a.body.slice(a.body.indexOf('{'), a.body.lastIndexOf('}') + 1)) as Record<string, string>;
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'shop.example');
    assert.equal(h.forwarded, undefined);
    assert.equal(h['x-real-ip'], undefined);
  });

  test('a client inside router.trustedProxies keeps its X-Forwarded-* (the list is extended)', async () => {
    const trusting = await startRouter({}, ['127.0.0.0/8']);
    try {
      const a = await rawRequest(trusting.port, 'GET /headers HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\nConnection: close\r\n\r\n');
      const h = JSON.parse(a.body.slice(a.body.indexOf('{'), a.body.lastIndexOf('}') + 1)) as Record<string, string>;
      assert.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
      assert.equal(h['x-forwarded-proto'], 'https');
      assert.equal(h['x-forwarded-host'], 'public.example');
    } finally {
      await trusting.router.close();
    }
  });

  test('a WebSocket handshake with a body or bad framing is refused before any upstream connection', async () => {
    await refused('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello', 400);
  });
});

/**
 * The client side on the llhttp binding (client-http1.ts): which requests it serves itself, how a
 * connection moves to node:http at a request boundary, and the answers it writes. Raw sockets, so
 * the exact bytes and their order are what is asserted.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { ClientHttp1, headersObject } from './client-http1.ts';
import { Router } from './router.ts';
import { routes, TestHealth } from '../../test/support/router.ts';

/** Writes each part (waiting `gapMs` between them) and collects what comes back until `until` matches, the peer closes, or 3 s pass. */
function talk(port: number, parts: string[], until: (got: string) => boolean, gapMs = 0): Promise<{ got: string; closed: boolean }> {
  return new Promise((resolve) => {
    const c = netConnect(port, '127.0.0.1');
    let got = '';
    const done = (closed: boolean) => { clearTimeout(timer); c.destroy(); resolve({ got, closed }); };
    const timer = setTimeout(() => done(false), 3_000);
    c.on('connect', async () => {
      for (const p of parts) {
        c.write(p);
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
    c.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (until(got)) done(false);
    });
    c.on('error', () => {});
    c.on('close', () => done(true));
  });
}

/** The payload of a chunked body (throws on bad framing). */
function dechunk(body: string): string {
  let out = '';
  let rest = body;
  for (;;) {
    const nl = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, nl), 16);
    assert.ok(Number.isInteger(size), `chunk size in ${JSON.stringify(rest)}`);
    if (size === 0) {
      assert.equal(rest.slice(nl), '\r\n\r\n');
      return out;
    }
    out += rest.slice(nl + 2, nl + 2 + size);
    assert.equal(rest.slice(nl + 2 + size, nl + 4 + size), '\r\n');
    rest = rest.slice(nl + 4 + size);
  }
}

const answers = (got: string) => got.split('HTTP/1.1 ').slice(1);

/** A plain http.Server whose 'request' handler says `node <n>`, with the fast path answering `fast <n>`. */
async function twoPathServer(): Promise<{ port: number; served: string[]; close: () => Promise<void> }> {
  const served: string[] = [];
  const server: Server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => {
      served.push(`node ${req.method} ${req.url}${body ? ` ${body}` : ''}`);
      const answer = `node ${served.length}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': answer.length });
      res.end(answer);
    });
  });
  new ClientHttp1(server, {
    maxHeaderBytes: 16_384, maxHeaderCount: 100, keepAliveTimeoutMs: 5_000, headersTimeoutMs: 0,
    accepts: (req) => !req.url.startsWith('/refused'),
    onRequest: (req, res) => {
      served.push(`fast ${req.method} ${req.url}`);
      const body = `fast ${served.length}`;
      const send = () => {
        res.writeHead(200, ['content-type', 'text/plain', 'content-length', String(body.length)]);
        res.end(body);
      };
      if (req.url === '/slow') setTimeout(send, 150);
      else send();
    },
    retiring: () => false,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port, served,
    close: () => { server.closeAllConnections(); return new Promise<void>((r) => server.close(() => r())); },
  };
}

describe('client-http1: which requests it serves, and the move to node:http', () => {
  const closers: (() => Promise<void>)[] = [];
  after(async () => { for (const c of closers.reverse()) await c(); });

  test('simple GETs on one keep-alive connection are served here, one after the other', async () => {
    const s = await twoPathServer();
    closers.push(s.close);
    const { got } = await talk(s.port, ['GET /a HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /b HTTP/1.1\r\nHost: x\r\n\r\n'], (g) => answers(g).length === 2 && g.endsWith('fast 2'), 100);
    assert.deepEqual(s.served, ['fast GET /a', 'fast GET /b']);
    assert.match(got, /^HTTP\/1\.1 200 OK\r\ncontent-type: text\/plain\r\ncontent-length: 6\r\nDate: [^\r]+ GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nfast 1HTTP/);
  });

  test('a POST with a body moves the connection to node:http, which serves it and every later request in order', async () => {
    const s = await twoPathServer();
    closers.push(s.close);
    await talk(s.port, ['GET /1 HTTP/1.1\r\nHost: x\r\n\r\n', 'POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello', 'GET /3 HTTP/1.1\r\nHost: x\r\n\r\n'], (g) => answers(g).length === 3 && /node 3$/.test(g), 150);
    assert.deepEqual(s.served, ['fast GET /1', 'node POST /2 hello', 'node GET /3']);
  });

  test('pipelined requests and a head split over two writes go to node:http, answered in order', async () => {
    const s = await twoPathServer();
    closers.push(s.close);
    const pipelined = await talk(s.port, ['GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n'], (g) => answers(g).length === 2 && /node 2$/.test(g));
    assert.match(pipelined.got, /node 1[\s\S]*node 2$/);
    await talk(s.port, ['GET /split HTTP/1.1\r\nHo', 'st: x\r\n\r\n'], (g) => /node 3$/.test(g), 150);
    assert.deepEqual(s.served, ['node GET /p1', 'node GET /p2', 'node GET /split']);
  });

  test('a request that arrives while an answer is in flight waits for it, and is then served here', async () => {
    const s = await twoPathServer();
    closers.push(s.close);
    const { got } = await talk(s.port, ['GET /slow HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /next HTTP/1.1\r\nHost: x\r\n\r\n'], (g) => answers(g).length === 2, 40);
    assert.deepEqual(s.served, ['fast GET /slow', 'fast GET /next']);
    assert.match(got, /fast 1HTTP\/1\.1 200 OK[\s\S]*fast 2$/);
  });

  test('HTTP/1.0, Upgrade, Connection: close and heads the router refuses go to node:http', async () => {
    const s = await twoPathServer();
    closers.push(s.close);
    await talk(s.port, ['GET /h10 HTTP/1.0\r\nHost: x\r\n\r\n'], (g) => /node 1$/.test(g));
    await talk(s.port, ['GET /up HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n'], (g) => /node 2$/.test(g));
    await talk(s.port, ['GET /refused HTTP/1.1\r\nHost: x\r\n\r\n'], (g) => /node 3$/.test(g));
    await talk(s.port, ['GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'], (g) => /node 4$/.test(g));
    assert.deepEqual(s.served, ['node GET /h10', 'node GET /up', 'node GET /refused', 'node GET /close']);
  });

  test('a head llhttp refuses reaches node:http, which answers 400 as before', async () => {
    const s = await twoPathServer();
    closers.push(s.close);
    const { got, closed } = await talk(s.port, ['GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n'], () => false);
    assert.match(got, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.equal(closed, true);
    assert.deepEqual(s.served, []);
  });

  test('req.headers is built as node:http builds it (first Host wins, cookies joined with "; ", set-cookie a list)', () => {
    const h = headersObject(['Host', 'a', 'host', 'b', 'Cookie', 'x=1', 'cookie', 'y=2', 'Accept', 'a/b', 'accept', 'c/d', 'Set-Cookie', 'p=1', 'set-cookie', 'q=2', '__proto__', 'v']);
    assert.equal(h.host, 'a');
    assert.equal(h.cookie, 'x=1; y=2');
    assert.equal(h.accept, 'a/b, c/d');
    assert.deepEqual(h['set-cookie'], ['p=1', 'q=2']);
    assert.equal(h.__proto__, 'v');
  });
});

/** A raw upstream answering each request head with `answer(head)`. */
async function rawUpstream(answer: (head: string) => string): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        s.write(answer(head));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: async () => { for (const s of sockets) s.destroy(); await new Promise<void>((r) => server.close(() => r())); } };
}

describe('client-http1 in the router: the answers it writes', () => {
  const closers: (() => Promise<void>)[] = [];
  after(async () => { for (const c of closers.reverse()) await c(); });

  async function routerOn(upstreamPort: number, headersTimeoutMs = 30_000): Promise<{ router: Router; port: number }> {
    const router = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: 1_000, health: new TestHealth(), limits: { headersTimeoutMs } });
    await router.start();
    closers.push(() => router.close());
    router.swap(routes({ color: 'blue', targets: [{ id: 'blue-0', host: '127.0.0.1', port: upstreamPort }] }));
    return { router, port: router.addresses().live.port };
  }

  test('a chunked upstream answer is sent chunked; HEAD gets no body; a Date is added only when the upstream sent none', async () => {
    const up = await rawUpstream((head) => head.startsWith('HEAD')
      ? 'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n'
      : 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    closers.push(up.close);
    const { port } = await routerOn(up.port);
    const chunked = await talk(port, ['GET / HTTP/1.1\r\nHost: shop\r\n\r\n'], (g) => g.endsWith('0\r\n\r\n'));
    assert.match(chunked.got, /^HTTP\/1\.1 200 OK\r\nDate: [^\r]+\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=65\r\n\r\n/);
    const body = chunked.got.slice(chunked.got.indexOf('\r\n\r\n') + 4);
    assert.equal(dechunk(body), 'hello world');
    const head = await talk(port, ['HEAD / HTTP/1.1\r\nHost: shop\r\n\r\n', 'GET / HTTP/1.1\r\nHost: shop\r\n\r\n'], (g) => g.endsWith('0\r\n\r\n'), 150);
    const [first, second] = answers(head.got);
    assert.equal(first, '200 OK\r\nContent-Length: 11\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=65\r\n\r\n');
    assert.match(second, /^200 OK\r\n/, 'the connection carried the next request after a bodiless answer');
  });

  test('a new connection that sends nothing gets 408 after headersTimeout, as from node:http', async () => {
    const up = await rawUpstream(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    closers.push(up.close);
    const { router, port } = await routerOn(up.port, 300);
    const { got, closed } = await talk(port, [], () => false);
    assert.match(got, /^HTTP\/1\.1 408 Request Timeout\r\nconnection: close\r\n/);
    assert.equal(closed, true);
    assert.equal(router.rejections()['408'], 1);
  });

  test('retiring: an idle connection is closed, and an answer in flight ends with Connection: close', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => { release = r; });
    // The upstream of the slow request answers only when released.
    const slow = createNetServer((s) => {
      s.on('error', () => {});
      s.once('data', () => void held.then(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow')));
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => slow.close(() => r())));
    const { router, port } = await routerOn((slow.address() as AddressInfo).port);
    const inFlight = talk(port, ['GET / HTTP/1.1\r\nHost: shop\r\n\r\n'], (g) => g.endsWith('slow'));
    const idle = talk(port, [], () => false);
    await new Promise((r) => setTimeout(r, 100));
    const retired = router.retire({ idleGraceMs: 50, drainTimeoutMs: 2_000 });
    await new Promise((r) => setTimeout(r, 200));
    release();
    const a = await inFlight;
    assert.match(a.got, /^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n\r\nslow$/);
    assert.equal((await idle).closed, true);
    assert.deepEqual(await retired, { completed: true, inFlightCut: 0 });
  });
});

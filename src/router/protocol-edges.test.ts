/**
 * Protocol edges found in issue #15's probes: an upstream answer followed by extra bytes, and
 * `Upgrade` headers that are not WebSocket handshakes (`h2c`). Raw sockets on both sides, so the
 * exact bytes are what is asserted.
 */
import assert from 'node:assert/strict';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import WebSocket from 'ws';
import { createLogger } from '../lib/logger.ts';
import { Router } from './router.ts';
import { routes, startUpstream, TestHealth } from '../../test/support/router.ts';

/** A raw upstream: answers every request head it reads with `answer(n)` (n = request count on this server). */
async function rawUpstream(answer: (n: number) => string): Promise<{ port: number; heads: string[]; connections: () => number; close: () => Promise<void> }> {
  const heads: string[] = [];
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createNetServer((s) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
        heads.push(buf.slice(0, end));
        buf = buf.slice(end + 4);
        s.write(answer(heads.length));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port, heads, connections: () => connections,
    close: async () => { for (const s of sockets) s.destroy(); await new Promise<void>((r) => server.close(() => r())); },
  };
}

/** Sends `raw` on one client connection and collects what comes back until `until` matches or 3 s pass. */
function exchange(port: number, raw: string[], until: (got: string) => boolean): Promise<string> {
  return new Promise((resolve) => {
    const c = netConnect(port, '127.0.0.1');
    let got = '';
    let i = 0;
    const timer = setTimeout(() => { c.destroy(); resolve(got); }, 3_000);
    const next = () => { if (i < raw.length) c.write(raw[i++]); };
    c.on('connect', next);
    c.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (until(got)) { clearTimeout(timer); c.destroy(); resolve(got); return; }
      next(); // one request at a time: the next once an answer arrived
    });
    c.on('error', () => {});
    c.on('close', () => { clearTimeout(timer); resolve(got); });
  });
}

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const dest = new Writable({ write(chunk: Buffer, _e, cb) { out.push(chunk.toString()); cb(); } });
  return { logger: createLogger({ level: 'warn', destination: dest }), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

async function routerTo(port: number, logger: ReturnType<typeof createLogger>): Promise<{ router: Router; port: number }> {
  const router = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: 1_000, health: new TestHealth(), logger });
  await router.start();
  router.swap(routes({ color: 'blue', targets: [{ id: 'blue-0', host: '127.0.0.1', port }] }));
  return { router, port: router.addresses().live.port };
}

const GET = 'GET /x HTTP/1.1\r\nhost: shop\r\n\r\n';

describe('an upstream answer followed by extra bytes', () => {
  const closers: (() => Promise<void>)[] = [];
  after(async () => { for (const c of closers.reverse()) await c(); });

  for (const [name, answer] of [
    ['a body longer than its Content-Length', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA GARBAGE'],
    ['bytes after a Connection: close answer', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nokEXTRA GARBAGE'],
    ['a second, unasked-for response', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n'],
  ] as const) {
    test(`${name}: the client gets the complete answer, the extra is dropped, the connection is not reused, it is logged`, async () => {
      const up = await rawUpstream(() => answer);
      closers.push(up.close);
      const log = capture();
      const { router, port } = await routerTo(up.port, log.logger);
      closers.push(() => router.close());
      // Two requests on one client connection: both answered 200 "ok" (before the fix: an empty reply).
      const got = await exchange(port, [GET, GET], (g) => (g.match(/\r\n\r\nok/g) ?? []).length >= 2);
      const answers = got.split('HTTP/1.1 ').filter(Boolean);
      assert.equal(answers.length, 2, JSON.stringify(got));
      for (const a of answers) {
        assert.match(a, /^200 OK\r\n/);
        assert.match(a, /\r\n\r\nok$/);
        assert.doesNotMatch(a, /EXTRA|204/);
      }
      assert.equal(up.connections(), 2, 'the connection that carried extra bytes is never reused');
      const warned = log.lines().filter((l) => /more than its answer/.test(String(l.msg)));
      assert.equal(warned.length, 1, 'logged once (then at most once a minute), not per request');
      assert.equal(warned[0].instance, 'blue-0');
    });
  }
});

describe('Upgrade headers that are not a WebSocket handshake', () => {
  const closers: (() => Promise<void>)[] = [];
  after(async () => { for (const c of closers.reverse()) await c(); });

  test('Upgrade: h2c is served as plain HTTP/1.1 (Upgrade, Connection and HTTP2-Settings stripped), never tunnelled raw', async () => {
    const up = await rawUpstream((n) => `HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok${n}`);
    closers.push(up.close);
    const { router, port } = await routerTo(up.port, capture().logger);
    closers.push(() => router.close());
    const h2c = 'GET / HTTP/1.1\r\nhost: shop\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n';
    // After the answer, the same connection carries a second request: it is parsed as HTTP by the
    // router (a raw tunnel would pass the bytes through without the router's X-Forwarded-For).
    const got = await exchange(port, [h2c, 'GET /second HTTP/1.1\r\nhost: shop\r\n\r\n'], (g) => g.includes('ok2'));
    assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(got, /content-length: 3/i, 'a normal framed answer, not a raw byte stream');
    assert.match(got, /ok1[\s\S]*HTTP\/1\.1 200 OK[\s\S]*ok2$/);
    assert.equal(up.heads.length, 2);
    assert.doesNotMatch(up.heads[0], /upgrade|http2-settings/i, up.heads[0]);
    assert.match(up.heads[0], /x-forwarded-for: 127\.0\.0\.1/);
    assert.match(up.heads[1], /^GET \/second HTTP\/1\.1\r\n[\s\S]*x-forwarded-for: 127\.0\.0\.1/);
  });

  test('a made-up Upgrade protocol is served as plain HTTP too; a WebSocket still upgrades', async () => {
    const ws = await startUpstream('blue', 0);
    closers.push(ws.close);
    const { router, port } = await routerTo(ws.port, capture().logger);
    closers.push(() => router.close());
    const got = await exchange(port, ['GET / HTTP/1.1\r\nhost: shop\r\nconnection: upgrade\r\nupgrade: foo/1\r\n\r\n'], (g) => g.includes('blue blue-0'));
    assert.match(got, /^HTTP\/1\.1 200 OK\r\n[\s\S]*blue blue-0$/);
    const sock = new WebSocket(`ws://127.0.0.1:${port}/`);
    const echoed = await new Promise<string>((resolve, reject) => {
      sock.on('open', () => sock.send('hi'));
      sock.on('message', (d) => resolve(d.toString()));
      sock.on('error', reject);
    });
    sock.close();
    assert.equal(echoed, 'blue:hi');
  });
});

/**
 * HTTP/2 on the router's TLS listener (ALPN h2 + http/1.1): the same answers as HTTP/1.1, the
 * same request binding at a switch (a stream in flight finishes on the old colour, the next
 * stream on the same connection goes to the new one), the drain, and the same limits.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { silentLogger } from '../lib/logger.ts';
import { CertificateStore } from '../tls/certificate-store.ts';
import { Router } from './router.ts';
import type { RequestRecord } from './data-plane.ts';
import { routes, sleep, startUpstream, TestHealth, type TestUpstream } from '../../test/support/router.ts';

function h2(session: ClientHttp2Session, p: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': p, ':method': opts.method ?? 'GET', ...(opts.headers ?? {}) });
    let body = '';
    let headers: Record<string, unknown> = {};
    req.on('response', (h) => { headers = h; });
    req.setEncoding('utf8');
    req.on('data', (d: string) => { body += d; });
    req.on('end', () => resolve({ status: Number(headers[':status']), body, headers }));
    req.on('error', reject);
    req.setTimeout(10_000, () => req.close());
    req.end(opts.body);
  });
}

describe('router over HTTP/2', () => {
  let dir: string;
  let ca: string;
  let store: CertificateStore;
  let blue: TestUpstream;
  let green: TestUpstream;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-h2-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'),
      '-days', '1', '-subj', '/CN=shop.test', '-addext', 'subjectAltName=DNS:shop.test'], { stdio: 'ignore' });
    ca = readFileSync(path.join(dir, 'c.pem'), 'utf8');
    store = new CertificateStore();
    store.setFiles(['shop.test'], { cert: path.join(dir, 'c.pem'), key: path.join(dir, 'k.pem') }, 'test');
    blue = await startUpstream('blue', 0);
    green = await startUpstream('green', 0);
  });
  after(async () => {
    await blue.close();
    await green.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(limits: ConstructorParameters<typeof Router>[0]['limits'] = {}) {
    const records: RequestRecord[] = [];
    const router = new Router({
      listen: { host: '127.0.0.1', port: 0 }, preview: null, tlsListen: { host: '127.0.0.1', port: 0 }, certificates: store,
      drainTimeoutMs: 5_000, health: new TestHealth(), logger: silentLogger, onRequest: (r) => records.push(r), limits,
    });
    router.swap(routes({ color: 'blue', targets: [blue.target] }));
    await router.start();
    const port = router.tlsAddress()!.port;
    const session = h2connect(`https://127.0.0.1:${port}`, { ca, servername: 'shop.test' });
    // Connected before the first stream, so a failure shows as the session's own error.
    await new Promise<void>((resolve, reject) => { session.once('connect', () => resolve()); session.once('error', reject); });
    return { router, port, session, records, close: async () => { session.destroy(); await router.close(); } };
  }

  test('ALPN offers h2 and http/1.1; both get the same answer', async () => {
    const { port, session, close } = await start();
    try {
      for (const alpn of ['h2', 'http/1.1']) {
        const proto = await new Promise<string | false>((resolve, reject) => {
          const s = tlsConnect({ host: '127.0.0.1', port, servername: 'shop.test', ca, ALPNProtocols: [alpn] }, () => { resolve(s.alpnProtocol ?? false); s.destroy(); });
          s.once('error', reject);
        });
        assert.equal(proto, alpn);
      }
      const r = await h2(session, '/');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'blue blue-0');
      const h1 = await fetch(`https://127.0.0.1:${port}/`).catch(() => null); // untrusted CA: refused, never a plain answer
      assert.equal(h1, null);
    } finally {
      await close();
    }
  });

  test('a stream in flight at the switch finishes on blue; the next stream on the same connection goes to green; the drain completes', async () => {
    const { router, session, records, close } = await start();
    try {
      const slow = h2(session, '/slow?ms=600');
      await sleep(150);
      assert.equal(router.inFlight('live', 'blue'), 1);
      const { drain } = router.swap(routes({ color: 'green', targets: [green.target] }, { color: 'blue', targets: [blue.target] }));
      assert.equal((await h2(session, '/')).body, 'green green-0');
      assert.equal((await slow).body, 'blue blue-0');
      const report = await drain!;
      assert.equal(report.completed, true);
      assert.equal(report.closedRequests, 0);
      assert.deepEqual(records.map((r) => [r.color, r.status]), [['green', 200], ['blue', 200]]);
    } finally {
      await close();
    }
  });

  test('the drain deadline resets a stream still open on the old colour, and only that stream', async () => {
    const router = new Router({
      listen: { host: '127.0.0.1', port: 0 }, preview: null, tlsListen: { host: '127.0.0.1', port: 0 }, certificates: store,
      drainTimeoutMs: 200, health: new TestHealth(), logger: silentLogger,
    });
    router.swap(routes({ color: 'blue', targets: [blue.target] }));
    await router.start();
    const session = h2connect(`https://127.0.0.1:${router.tlsAddress()!.port}`, { ca, servername: 'shop.test' });
    try {
      const hung = h2(session, '/hang').then((r) => (Number.isNaN(r.status) ? 'no answer' : 'answered'), () => 'reset');
      await sleep(150);
      const { drain } = router.swap(routes({ color: 'green', targets: [green.target] }));
      const report = await drain!;
      assert.equal(report.completed, false);
      assert.equal(report.closedRequests, 1);
      assert.equal(await hung, 'reset');
      assert.equal((await h2(session, '/')).body, 'green green-0', 'the connection itself stays usable');
    } finally {
      session.destroy();
      await router.close();
    }
  });

  test('limits hold over HTTP/2: body size 413, header count 431, target length 414; headers reach the app as HTTP/1.1', async () => {
    const { session, close } = await start({ maxBodyBytes: 1024, maxHeaderCount: 10, maxUrlBytes: 100 });
    try {
      assert.equal((await h2(session, '/sha', { method: 'POST', body: Buffer.alloc(4096) })).status, 413);
      const many = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`x-h${i}`, 'v']));
      assert.equal((await h2(session, '/', { headers: many })).status, 431);
      assert.equal((await h2(session, `/${'a'.repeat(200)}`)).status, 414);
      const ok = await h2(session, '/sha', { method: 'POST', body: Buffer.from('hello') });
      assert.match(ok.body, /^blue blue-0 5 /);
      const seen = JSON.parse((await h2(session, '/headers', { headers: { cookie: 'a=1' } })).body) as { raw: string[] };
      const names = seen.raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      assert.ok(names.includes('host') && !names.some((n) => n.startsWith(':')), names.join(','));
      assert.equal(seen.raw[seen.raw.findIndex((n, i) => i % 2 === 0 && n.toLowerCase() === 'x-forwarded-proto') + 1], 'https');
    } finally {
      await close();
    }
  });

  test('HTTP/1.1 on the TLS listener gets the plain listeners\' parser limits and timeouts (431, 408, 400 without Host)', async () => {
    const router = new Router({
      listen: { host: '127.0.0.1', port: 0 }, preview: null, tlsListen: { host: '127.0.0.1', port: 0 }, certificates: store,
      drainTimeoutMs: 1_000, health: new TestHealth(), logger: silentLogger, limits: { maxHeaderBytes: 4_096, headersTimeoutMs: 500, requestTimeoutMs: 1_000 },
    });
    router.swap(routes({ color: 'blue', targets: [blue.target] }));
    await router.start();
    const port = router.tlsAddress()!.port;
    const firstLine = (data: string) => new Promise<string>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port, servername: 'shop.test', ca, ALPNProtocols: ['http/1.1'] }, () => s.write(data));
      let out = '';
      s.on('data', (d: Buffer) => { out += d.toString('latin1'); });
      const done = () => resolve(out.split('\r\n')[0]);
      s.on('close', done);
      s.on('error', done);
      setTimeout(() => { s.destroy(); }, 5_000);
    });
    try {
      assert.equal(await firstLine(`GET / HTTP/1.1\r\nHost: shop.test\r\nX-Big: ${'a'.repeat(8_000)}\r\n\r\n`), 'HTTP/1.1 431 Request Header Fields Too Large');
      assert.equal(await firstLine('GET / HTTP/1.1\r\nHost: shop.test\r\n'), 'HTTP/1.1 408 Request Timeout');
      assert.equal(await firstLine('GET / HTTP/1.1\r\n\r\n'), 'HTTP/1.1 400 Bad Request');
      assert.equal(await firstLine('GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n'), 'HTTP/1.1 200 OK');
    } finally {
      await router.close();
    }
  });

  test('a WebSocket over the TLS listener (HTTP/1.1 upgrade) is tunnelled to the live colour', async () => {
    const { port, close } = await start();
    try {
      // (ws passes TLS options such as servername through to https.request; its types do not list them.)
      const ws = new WebSocket(`wss://127.0.0.1:${port}/chat`, { ca, servername: 'shop.test', headers: { host: 'shop.test' } } as unknown as WebSocket.ClientOptions);
      const echoed = await new Promise<string>((resolve, reject) => {
        ws.once('open', () => ws.send('hello'));
        ws.once('message', (d) => resolve(String(d)));
        ws.once('error', reject);
      });
      assert.equal(echoed, 'blue:hello');
      ws.close();
    } finally {
      await close();
    }
  });
});

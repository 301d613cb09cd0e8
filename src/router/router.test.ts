import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Client } from 'undici';
import WebSocket from 'ws';
import { silentLogger } from '../lib/logger.ts';
import type { RequestRecord } from './data-plane.ts';
import { Router } from './router.ts';
import { blackhole, refusingPort, routes, sleep, startUpstream, TestHealth, type TestUpstream } from '../../test/support/router.ts';

async function get(base: string, path: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const r = await fetch(base + path, { method: init.method ?? 'GET', headers: init.headers });
  return { status: r.status, body: await r.text(), headers: Object.fromEntries(r.headers) };
}

function urlOf(a: { host: string; port: number }): string {
  return `http://${a.host}:${a.port}`;
}

describe('router', () => {
  let blue: TestUpstream[];
  let green: TestUpstream[];
  before(async () => {
    blue = [await startUpstream('blue', 0), await startUpstream('blue', 1)];
    green = [await startUpstream('green', 0), await startUpstream('green', 1)];
  });
  after(async () => {
    await Promise.all([...blue, ...green].map((u) => u.close()));
  });

  async function makeRouter(opts: Partial<ConstructorParameters<typeof Router>[0]> = {}): Promise<{ router: Router; live: string; preview: string; health: TestHealth; records: RequestRecord[] }> {
    const health = (opts.health as TestHealth | undefined) ?? new TestHealth();
    const records: RequestRecord[] = [];
    const router = new Router({
      listen: { host: '127.0.0.1', port: 0 },
      preview: { host: '127.0.0.1', port: 0 },
      drainTimeoutMs: 5_000,
      logger: silentLogger,
      onRequest: (r) => records.push(r),
      ...opts,
      health,
    });
    await router.start();
    const a = router.addresses();
    return { router, live: urlOf(a.live), preview: urlOf(a.preview!), health, records };
  }

  test('before the first release the live listener answers 503 "no release is live yet"', async () => {
    const { router, live } = await makeRouter();
    try {
      const r = await get(live, '/');
      assert.equal(r.status, 503);
      assert.equal(r.body, '503 Service Unavailable: no release is live yet\n');
    } finally {
      await router.close();
    }
  });

  test('live goes to the live colour, preview to the preview colour, across both instances', async () => {
    const { router, live, preview, records } = await makeRouter();
    try {
      router.swap(routes({ color: 'blue', targets: blue.map((u) => u.target) }, { color: 'green', targets: green.map((u) => u.target) }));
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add((await get(live, '/')).body);
      assert.deepEqual([...seen].sort(), ['blue blue-0', 'blue blue-1']);
      assert.match((await get(preview, '/')).body, /^green green-\d$/);
      assert.equal(records.filter((r) => r.listener === 'live' && r.color === 'blue' && r.status === 200).length, 6);
      assert.equal(router.stats.query('live', 'blue', Date.now() - 10_000, Date.now() + 1_000).requests, 6);
    } finally {
      await router.close();
    }
  });

  test('a capture copies the head and at most maxBodyBytes of the live requests it chooses into their record; the upstream still gets the whole body', async () => {
    const { router, live, preview, records } = await makeRouter();
    try {
      router.swap(routes({ color: 'blue', targets: blue.map((u) => u.target) }, { color: 'green', targets: green.map((u) => u.target) }));
      router.setCapture({ maxBodyBytes: 16, wants: (method, p) => method === 'POST' && p.startsWith('/sha') });
      const big = randomBytes(1000);
      const post = async (base: string, body: Buffer) => {
        const r = await fetch(`${base}/sha?x=1`, { method: 'POST', body, headers: { 'x-test': 'yes' } });
        return r.text();
      };
      assert.match(await post(live, big), new RegExp(` 1000 ${createHash('sha256').update(big).digest('hex')}$`), 'the upstream got every byte');
      const small = Buffer.from('{"title":"kiwi"}');
      await post(live, small);
      await get(live, '/');
      await post(preview, small);
      const captured = records.filter((r) => r.request !== undefined);
      assert.equal(captured.length, 2, 'only the chosen live requests');
      assert.equal(captured[0].request?.path, '/sha?x=1');
      assert.equal(captured[0].request?.truncated, true);
      assert.equal(captured[0].request?.body?.length, 16);
      assert.deepEqual(captured[0].request?.body, big.subarray(0, 16));
      assert.equal(captured[1].request?.truncated, false);
      assert.deepEqual(captured[1].request?.body, small);
      const h = captured[1].request?.rawHeaders ?? [];
      assert.equal(h[h.findIndex((x) => x.toLowerCase() === 'x-test') + 1], 'yes');
      router.setCapture(null);
      await post(live, small);
      assert.equal(records.filter((r) => r.request !== undefined).length, 2, 'capture off: nothing copied');
    } finally {
      await router.close();
    }
  });

  test('a request in flight at the switch completes on blue while new requests go to green; the drain completes', async () => {
    const { router, live } = await makeRouter();
    try {
      router.swap(routes({ color: 'blue', targets: blue.map((u) => u.target) }));
      const slow = get(live, '/slow?ms=800');
      await sleep(100);
      assert.equal(router.inFlight('live', 'blue'), 1);
      const { drain } = router.swap(routes({ color: 'green', targets: green.map((u) => u.target) }, { color: 'blue', targets: blue.map((u) => u.target) }));
      assert.ok(drain);
      assert.match((await get(live, '/')).body, /^green /);
      assert.match((await slow).body, /^blue /);
      const report = await drain;
      assert.equal(report.color, 'blue');
      assert.equal(report.completed, true);
      assert.equal(report.closedRequests, 0);
      assert.ok(report.durationMs >= 500, `drain took ${report.durationMs}ms`);
    } finally {
      await router.close();
    }
  });

  test('a keep-alive client connection carries its next request to the new live colour', async () => {
    const { router, live } = await makeRouter();
    const client = new Client(live, { pipelining: 1 });
    try {
      router.swap(routes({ color: 'blue', targets: blue.map((u) => u.target) }));
      const a = await client.request({ path: '/', method: 'GET' });
      assert.match(await a.body.text(), /^blue /);
      router.swap(routes({ color: 'green', targets: green.map((u) => u.target) }));
      const b = await client.request({ path: '/', method: 'GET' });
      assert.match(await b.body.text(), /^green /);
    } finally {
      await client.close();
      await router.close();
    }
  });

  test('a drain that hits drainTimeout closes the old colour\'s request and reports it', async () => {
    const { router, live } = await makeRouter({ drainTimeoutMs: 300 });
    try {
      router.swap(routes({ color: 'blue', targets: blue.map((u) => u.target) }));
      const hung = get(live, '/hang').then(() => 'answered', () => 'cut');
      await sleep(100);
      const { drain } = router.swap(routes({ color: 'green', targets: green.map((u) => u.target) }));
      const report = await drain!;
      assert.equal(report.completed, false);
      assert.equal(report.closedRequests, 1);
      assert.equal(await hung, 'cut');
      assert.equal(router.inFlight('live'), 0);
    } finally {
      await router.close();
    }
  });

  test('hop-by-hop headers are stripped both ways and X-Forwarded-* are set', async () => {
    const { router, live } = await makeRouter();
    try {
      router.swap(routes({ color: 'blue', targets: [blue[0].target] }));
      const port = Number(new URL(live).port);
      // Raw request so we control hop-by-hop headers exactly (fetch would drop some).
      const out = await new Promise<{ status: number; headers: string[]; body: string }>((resolve, reject) => {
        const req = httpRequest({
          host: '127.0.0.1', port, path: '/headers', method: 'GET', setHost: false,
          headers: [
            'Host', 'shop.example',
            'Connection', 'keep-alive, X-Drop-Me',
            'X-Drop-Me', 'secret',
            'Keep-Alive', 'timeout=9',
            'TE', 'trailers',
            'Proxy-Authorization', 'Basic Zm9vOmJhcg==',
            'Proxy-Connection', 'keep-alive',
            'X-Forwarded-For', '203.0.113.7',
            'X-Forwarded-Proto', 'https',
            'X-Forwarded-Host', 'spoofed.example',
            'X-Keep', 'yes',
          ],
        }, (res) => {
          let body = '';
          res.on('data', (c) => { body += c; });
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.rawHeaders, body }));
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(out.status, 200);
      const { raw } = JSON.parse(out.body) as { raw: string[] };
      const upstream = new Map<string, string[]>();
      for (let i = 0; i < raw.length; i += 2) upstream.set(raw[i].toLowerCase(), [...(upstream.get(raw[i].toLowerCase()) ?? []), raw[i + 1]]);
      for (const h of ['x-drop-me', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection', 'upgrade', 'transfer-encoding']) assert.equal(upstream.has(h), false, `${h} must not reach the upstream`);
      // The pool's own keep-alive Connection header is fine; the client's tokens are not passed on.
      assert.ok(!(upstream.get('connection') ?? []).some((v) => /x-drop-me/i.test(v)));
      assert.deepEqual(upstream.get('host'), ['shop.example']);
      // The client is not a trusted proxy: its X-Forwarded-For is replaced, not extended (issue #6).
      assert.deepEqual(upstream.get('x-forwarded-for'), ['127.0.0.1']);
      assert.deepEqual(upstream.get('x-forwarded-proto'), ['http']);
      assert.deepEqual(upstream.get('x-forwarded-host'), ['shop.example']);
      assert.deepEqual(upstream.get('x-keep'), ['yes']);
      assert.equal(upstream.has('x-cutover-color'), false);

      const res = await new Promise<{ headers: string[] }>((resolve, reject) => {
        httpRequest({ host: '127.0.0.1', port, path: '/hop' }, (r) => { r.resume(); r.on('end', () => resolve({ headers: r.rawHeaders })); }).on('error', reject).end();
      });
      const names = res.headers.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      for (const h of ['x-secret-hop', 'proxy-authenticate', 'trailer', 'upgrade']) assert.ok(!names.includes(h), `${h} must not reach the client`);
      assert.ok(names.includes('x-end-to-end'));
      assert.equal(names.filter((n) => n === 'set-cookie').length, 2, 'repeated headers survive');
      // Connection/Keep-Alive present are the router's own (client side), not the upstream's.
      const conn = res.headers[res.headers.findIndex((v, i) => i % 2 === 0 && v.toLowerCase() === 'connection') + 1];
      assert.equal(conn, 'keep-alive');
    } finally {
      await router.close();
    }
  });

  test('a 20 MB POST body streams through intact (never buffered whole), and a 32 MB answer streams back', async () => {
    // Above the 10 MiB default body limit (router.maxBodySize), raised here as an operator would.
    const { router, live } = await makeRouter({ limits: { maxBodyBytes: 32 * 1024 * 1024 } });
    try {
      router.swap(routes({ color: 'blue', targets: [blue[0].target] }));
      const MB = 1024 * 1024;
      const chunk = randomBytes(MB);
      const hash = createHash('sha256');
      for (let i = 0; i < 20; i++) hash.update(chunk);
      const expected = hash.digest('hex');
      const base = blue[0].shaBytes;
      let sent = 0;
      let maxAhead = 0;
      // Before sending each megabyte, wait until the upstream has most of what was sent: a proxy
      // that buffered the whole body would deadlock this (caught by the wait limit below).
      const body = new ReadableStream<Uint8Array>({
        async pull(ctrl) {
          if (sent === 20) return ctrl.close();
          for (let w = 0; blue[0].shaBytes - base < (sent - 8) * MB; w++) {
            if (w > 500) return ctrl.error(new Error(`upstream got ${blue[0].shaBytes - base} bytes after ${sent} MB sent`));
            await sleep(10);
          }
          maxAhead = Math.max(maxAhead, sent * MB - (blue[0].shaBytes - base));
          sent++;
          ctrl.enqueue(chunk);
        },
      });
      const r = await fetch(`${live}/sha`, { method: 'POST', body, duplex: 'half' } as RequestInit);
      assert.equal(r.status, 200);
      assert.equal(await r.text(), `blue blue-0 ${20 * MB} ${expected}`);
      assert.ok(maxAhead <= 8 * MB);

      const doneBefore = blue[0].bigDone;
      const big = await fetch(`${live}/big`);
      const reader = big.body!.getReader();
      let n = (await reader.read()).value!.length;
      await sleep(300); // a buffering proxy would have read all 32 MB from the upstream by now
      assert.equal(blue[0].bigDone, doneBefore, 'the upstream is held back by the slow client');
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        n += value.length;
      }
      assert.equal(n, 32 * MB);
    } finally {
      await router.close();
    }
  });

  test('a GET whose first target refuses the connection is answered by the other instance', async () => {
    const health = new TestHealth();
    const dead = { id: 'blue-9', host: '127.0.0.1', port: await refusingPort() };
    const { router, live, records } = await makeRouter({ health });
    try {
      router.swap(routes({ color: 'blue', targets: [dead, blue[0].target] }));
      for (let i = 0; i < 4; i++) {
        const r = await get(live, '/');
        assert.equal(r.status, 200);
        assert.equal(r.body, 'blue blue-0');
      }
      assert.ok(health.reports.some((x) => x.id === 'blue-9' && /refused/.test(x.reason)), 'the refusal is reported to health');
      assert.ok(records.every((r) => r.status === 200));
    } finally {
      await router.close();
    }
  });

  test('a kept-alive connection the upstream closed as a GET went out: sent again on a new connection, even with one instance', async () => {
    // Closes each connection when its second request arrives (an idle timeout racing the request).
    let connections = 0;
    const server = createNetServer((socket) => {
      connections++;
      let requests = 0;
      socket.on('error', () => {});
      socket.on('data', (d) => {
        if (!d.includes('\r\n\r\n')) return;
        if (requests++ > 0) socket.destroy();
        else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const target = { id: 'blue-7', host: '127.0.0.1', port: (server.address() as AddressInfo).port };
    const { router, live, records } = await makeRouter();
    try {
      router.swap(routes({ color: 'blue', targets: [target] }));
      for (let i = 0; i < 3; i++) assert.equal((await get(live, '/')).body, 'ok');
      assert.equal(connections, 3, 'each GET after the first met a closed connection and was sent again on a new one');
      assert.ok(records.every((r) => r.status === 200));
      // A POST with a body is never sent twice: the stale connection is a 502.
      const post = await fetch(`${live}/x`, { method: 'POST', body: 'once' });
      assert.equal(post.status, 502);
      assert.equal(await post.text(), '502 Bad Gateway: upstream blue-7 closed the connection before answering\n');
    } finally {
      await router.close();
      server.close();
    }
  });

  test('a POST with a body is not retried: 502 naming the instance', async () => {
    const dead = { id: 'blue-9', host: '127.0.0.1', port: await refusingPort() };
    const { router, live, records } = await makeRouter();
    try {
      router.swap(routes({ color: 'blue', targets: [dead] }));
      const r = await fetch(`${live}/sha`, { method: 'POST', body: 'hello' });
      assert.equal(r.status, 502);
      assert.equal(await r.text(), '502 Bad Gateway: upstream blue-9 refused the connection\n');
      assert.equal(records.at(-1)?.error, 'connect');
      // Also with a second, healthy instance: the refused POST is not sent there.
      router.swap(routes({ color: 'blue', targets: [dead, blue[1].target] }));
      const before = blue[1].requests;
      let refused = 0;
      for (let i = 0; i < 4; i++) if ((await fetch(`${live}/sha`, { method: 'POST', body: 'x' })).status === 502) refused++;
      assert.ok(refused >= 1, 'round robin reached the dead instance at least once');
      assert.equal(blue[1].requests - before, 4 - refused);
    } finally {
      await router.close();
    }
  });

  test('an upstream that never answers gets 504 after responseTimeoutMs', async () => {
    const { router, live, records } = await makeRouter({ responseTimeoutMs: 300 });
    try {
      router.swap(routes({ color: 'blue', targets: [blue[0].target] }));
      const t0 = performance.now();
      const r = await get(live, '/hang');
      const ms = performance.now() - t0;
      assert.equal(r.status, 504);
      assert.equal(r.body, '504 Gateway Timeout: upstream blue-0 did not answer in time\n');
      assert.ok(ms >= 250 && ms < 2_000, `answered after ${ms.toFixed(0)}ms`);
      assert.equal(records.at(-1)?.error, 'timeout');
    } finally {
      await router.close();
    }
  });

  test('a connect that never completes gets 504 after connectTimeoutMs', async () => {
    const hole = await blackhole();
    const health = new TestHealth();
    const { router, live, records } = await makeRouter({ connectTimeoutMs: 300, health });
    try {
      router.swap(routes({ color: 'blue', targets: [{ id: 'blue-7', host: hole.host, port: hole.port }] }));
      const t0 = performance.now();
      const r = await get(live, '/');
      const ms = performance.now() - t0;
      assert.equal(r.status, 504);
      assert.equal(r.body, '504 Gateway Timeout: upstream blue-7 did not accept the connection in time\n');
      assert.ok(ms >= 250 && ms < 2_000, `answered after ${ms.toFixed(0)}ms`);
      assert.equal(records.at(-1)?.error, 'timeout');
      assert.equal(health.reports[0]?.id, 'blue-7');
    } finally {
      hole.close();
      await router.close();
    }
  });

  test('a colour with zero healthy instances answers 503 without trying to connect', async () => {
    const health = new TestHealth();
    const { router, live, records } = await makeRouter({ health });
    try {
      router.swap(routes({ color: 'blue', targets: blue.map((u) => u.target) }));
      health.down.add('blue-0');
      health.down.add('blue-1');
      const before = blue[0].connections + blue[1].connections + blue[0].requests + blue[1].requests;
      const r = await get(live, '/');
      assert.equal(r.status, 503);
      assert.equal(r.body, '503 Service Unavailable: no healthy instance of blue\n');
      assert.equal(blue[0].connections + blue[1].connections + blue[0].requests + blue[1].requests, before);
      assert.equal(records.at(-1)?.error, 'no-healthy');
      // One healthy again: traffic goes only there.
      health.down.delete('blue-1');
      for (let i = 0; i < 3; i++) assert.equal((await get(live, '/')).body, 'blue blue-1');
    } finally {
      await router.close();
    }
  });

  test('pools of targets no longer in the table close once their requests finish', async () => {
    const { router, live } = await makeRouter();
    try {
      router.swap(routes({ color: 'blue', targets: [blue[0].target] }));
      const slow = get(live, '/slow?ms=400');
      await get(live, '/');
      await sleep(50);
      assert.ok(blue[0].open() >= 1);
      router.swap(routes({ color: 'green', targets: [green[0].target] }));
      await sleep(100);
      assert.ok(blue[0].open() >= 1, 'still in use by the slow request');
      assert.match((await slow).body, /^blue/);
      await sleep(200);
      assert.equal(blue[0].open(), 0, 'blue pool closed after its last request');
    } finally {
      await router.close();
    }
  });

  describe('WebSockets', () => {
    function openWs(url: string): Promise<{ ws: WebSocket; next: () => Promise<string>; closed: Promise<number> }> {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(url.replace('http', 'ws') + '/socket');
        const queue: string[] = [];
        const waiters: ((s: string) => void)[] = [];
        ws.on('message', (d) => { const s = d.toString(); const w = waiters.shift(); if (w) w(s); else queue.push(s); });
        const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
        ws.on('open', () => resolve({ ws, closed, next: () => new Promise((r) => { const s = queue.shift(); if (s !== undefined) r(s); else waiters.push(r); }) }));
        ws.on('error', reject);
        ws.on('unexpected-response', (_req, res) => reject(new Error(`unexpected ${res.statusCode}`)));
      });
    }

    test('a WebSocket is proxied to the live colour and echoes', async () => {
      const { router, live } = await makeRouter();
      try {
        router.swap(routes({ color: 'blue', targets: [blue[0].target] }));
        const { ws, next } = await openWs(live);
        ws.send('hello');
        assert.equal(await next(), 'blue:hello');
        assert.equal(router.inFlight('live', 'blue'), 1);
        ws.close();
        await sleep(100);
        assert.equal(router.inFlight('live', 'blue'), 0);
      } finally {
        await router.close();
      }
    });

    test('a WebSocket on the old colour stays open past the switch and is closed at drainTimeout', async () => {
      const { router, live } = await makeRouter({ drainTimeoutMs: 500 });
      try {
        router.swap(routes({ color: 'blue', targets: [blue[0].target] }));
        const old = await openWs(live);
        const t0 = performance.now();
        const { drain } = router.swap(routes({ color: 'green', targets: [green[0].target] }));
        const fresh = await openWs(live);
        fresh.ws.send('new');
        assert.equal(await fresh.next(), 'green:new');
        await sleep(200);
        old.ws.send('still there');
        assert.equal(await old.next(), 'blue:still there');
        const report = await drain!;
        const code = await old.closed;
        assert.ok(performance.now() - t0 >= 450);
        assert.equal(report.completed, false);
        assert.equal(report.closedWebSockets, 1);
        assert.equal(report.closedRequests, 0);
        assert.equal(code, 1006, 'abnormal closure: the tunnel was cut');
        // The live colour's WebSocket was not touched.
        fresh.ws.send('after');
        assert.equal(await fresh.next(), 'green:after');
        fresh.ws.close();
      } finally {
        await router.close();
      }
    });

    test('a rollback before drainTimeout cancels the drain and the WebSocket stays open', async () => {
      const { router, live } = await makeRouter({ drainTimeoutMs: 400 });
      try {
        const blueRoutes = routes({ color: 'blue', targets: [blue[0].target] });
        router.swap(blueRoutes);
        const old = await openWs(live);
        const { drain } = router.swap(routes({ color: 'green', targets: [green[0].target] }));
        await sleep(100);
        const back = router.swap(routes({ color: 'blue', targets: [blue[0].target] }));
        const report = await drain!;
        assert.equal(report.completed, true);
        assert.equal(report.closedWebSockets, 0);
        await sleep(500); // past the original deadline
        old.ws.send('alive');
        assert.equal(await old.next(), 'blue:alive');
        assert.ok(back.drain, 'green is drained in turn');
        assert.equal((await back.drain).completed, true);
        old.ws.close();
      } finally {
        await router.close();
      }
    });

    test('a WebSocket to a refusing upstream gets 502; to an unhealthy colour 503', async () => {
      const health = new TestHealth();
      const dead = { id: 'blue-9', host: '127.0.0.1', port: await refusingPort() };
      const { router, live } = await makeRouter({ health });
      try {
        router.swap(routes({ color: 'blue', targets: [dead] }));
        await assert.rejects(openWs(live), /unexpected 502/);
        health.down.add('blue-9');
        await assert.rejects(openWs(live), /unexpected 503/);
        // Raw: the text names the instance and nothing else.
        health.down.clear();
        const port = Number(new URL(live).port);
        const text = await new Promise<string>((resolve) => {
          const s = netConnect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'));
          let buf = '';
          s.on('data', (d) => { buf += d; });
          s.on('close', () => resolve(buf));
        });
        assert.match(text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
        assert.ok(text.endsWith('\r\n\r\n502 Bad Gateway: upstream blue-9 refused the connection\n'));
      } finally {
        await router.close();
      }
    });
  });

  test('close() ends in-flight requests and idle keep-alive connections promptly', async () => {
    const { router, live } = await makeRouter();
    router.swap(routes({ color: 'blue', targets: [blue[0].target] }));
    const agent = new HttpAgent({ keepAlive: true });
    const port = Number(new URL(live).port);
    await new Promise<void>((resolve) => httpRequest({ host: '127.0.0.1', port, agent }, (r) => { r.resume(); r.on('end', resolve); }).end());
    const hung = get(live, '/hang').then(() => 'answered', () => 'cut');
    await sleep(50);
    const t0 = performance.now();
    await router.close();
    assert.ok(performance.now() - t0 < 1_000);
    assert.equal(await hung, 'cut');
    agent.destroy();
  });
});

/**
 * Upstreams that hang and clients that stall (issue #6): timeouts answer, and the router stays
 * responsive for everyone else meanwhile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Pool } from 'undici';
import { Router } from '../src/router/router.ts';
import { routes, startUpstream, TestHealth } from './support/router.ts';
import { silentLogger } from '../src/lib/logger.ts';

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

test('200 requests to a hanging upstream get 504 at responseTimeout while other requests keep answering meanwhile', { timeout: 60_000 }, async () => {
  const up = await startUpstream('blue', 0);
  // The hang is long (3 s) next to what the fast requests need, and the test asserts an order (every
  // fast answer while all 200 still hang), not a latency: a busy machine cannot make it flake by
  // stretching milliseconds (issue 16); a router blocked by the hung requests still fails it.
  const hangMs = 3_000;
  const router = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: 1_000, responseTimeoutMs: hangMs, health: new TestHealth(), logger: silentLogger });
  await router.start();
  router.swap(routes({ color: 'blue', targets: [up.target] }));
  const base = `http://127.0.0.1:${router.addresses().live.port}`;
  const hangPool = new Pool(base, { connections: 200 });
  const fastPool = new Pool(base, { connections: 4 });
  try {
    const t0 = performance.now();
    let firstHungAnswer = Infinity;
    const hanging = Array.from({ length: 200 }, () => hangPool.request({ path: '/hang', method: 'GET' }).then(async (r) => {
      firstHungAnswer = Math.min(firstHungAnswer, performance.now());
      return { status: r.statusCode, body: await r.body.text(), ms: performance.now() - t0 };
    }));
    const deadline = Date.now() + hangMs / 2;
    while (router.inFlight('live') < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(router.inFlight('live'), 200, 'all 200 hang in the router');
    const lat: number[] = [];
    for (let i = 0; i < 30; i++) {
      const s = performance.now();
      const r = await fastPool.request({ path: '/', method: 'GET' });
      assert.equal(r.statusCode, 200);
      await r.body.text();
      lat.push(performance.now() - s);
    }
    const fastDone = performance.now();
    assert.equal(router.inFlight('live'), 200, 'the 30 fast requests were answered while all 200 still hung');
    const answers = await Promise.all(hanging);
    assert.ok(fastDone < firstHungAnswer, 'every fast answer came before the first 504');
    assert.ok(answers.every((a) => a.status === 504), `statuses: ${[...new Set(answers.map((a) => a.status))]}`);
    assert.match(answers[0].body, /504 Gateway Timeout: upstream blue-0 did not answer in time/);
    assert.ok(answers.every((a) => a.ms >= hangMs * 0.95), `504s after ${Math.round(Math.min(...answers.map((a) => a.ms)))} ms, not before the response timeout`);
    console.log(`# 30 requests answered during the hang, p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${percentile(lat, 99).toFixed(1)} ms`);
    assert.equal(router.inFlight('live'), 0, 'nothing left in flight');
  } finally {
    await hangPool.close();
    await fastPool.close();
    await router.close();
    await up.close();
  }
});

test('300 slowloris connections (a head that never ends) get 408 and are closed; other clients are served throughout', async () => {
  const up = await startUpstream('blue', 0);
  const router = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: 1_000, health: new TestHealth(), logger: silentLogger, limits: { headersTimeoutMs: 500, requestTimeoutMs: 1_000 } });
  await router.start();
  router.swap(routes({ color: 'blue', targets: [up.target] }));
  const port = router.addresses().live.port;
  const fastPool = new Pool(`http://127.0.0.1:${port}`, { connections: 2 });
  const sockets: Socket[] = [];
  const answers: string[] = [];
  try {
    for (let i = 0; i < 300; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      let out = '';
      s.on('data', (d: Buffer) => { out += d.toString('latin1'); });
      s.on('close', () => answers.push(out.split('\r\n')[0]));
      s.write('GET / HTTP/1.1\r\nHost: x\r\nX-Trickle: ');
      sockets.push(s);
    }
    const t0 = performance.now();
    let served = 0;
    const trickle = setInterval(() => { for (const s of sockets) if (!s.destroyed) s.write('a'); }, 100);
    while (performance.now() - t0 < 1_500) {
      const r = await fastPool.request({ path: '/', method: 'GET' });
      assert.equal(r.statusCode, 200);
      await r.body.text();
      served++;
    }
    clearInterval(trickle);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(answers.length, 300, 'every slow connection was closed by the router');
    assert.ok(answers.every((a) => a === 'HTTP/1.1 408 Request Timeout'), `answers: ${[...new Set(answers)]}`);
    assert.ok(served > 20, `only ${served} requests served meanwhile`);
    assert.equal(up.requests, served, 'no slow head reached the upstream');
  } finally {
    for (const s of sockets) s.destroy();
    await fastPool.close();
    await router.close();
    await up.close();
  }
});

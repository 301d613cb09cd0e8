/**
 * The worker pool (`router.workers`): two worker threads on the same ports (SO_REUSEPORT), real
 * upstreams, keep-alive load. A switch is applied only when both workers acknowledged it; 20
 * switches under load fail 0 requests; stats, drains, health changes and the traffic sample's
 * request copies cross the threads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { httpGet, routes, sleep, startUpstream, type TestUpstream } from '../../test/support/router.ts';
import { WorkerPool } from './workers.ts';
import type { RequestRecord } from './data-plane.ts';
import { captureFromSpec } from './capture-spec.ts';

class Health extends EventEmitter {
  readonly down = new Set<string>();
  readonly reports: string[] = [];
  isHealthy(id: string): boolean { return !this.down.has(id); }
  reportFailure(id: string): void { this.reports.push(id); }
  set(id: string, healthy: boolean): void {
    if (healthy) this.down.delete(id); else this.down.add(id);
    this.emit('change', id, healthy, 'test');
  }
}

const get = (url: string, agent?: http.Agent | false) => httpGet(url, agent, 10_000);

async function pool(t: { after: (fn: () => Promise<void>) => void }, o: { drainTimeoutMs?: number } = {}) {
  const ups: Record<string, TestUpstream> = {};
  for (const [c, i] of [['blue', 0], ['blue', 1], ['green', 0], ['green', 1]] as const) ups[`${c}-${i}`] = await startUpstream(c, i);
  const health = new Health();
  const records: RequestRecord[] = [];
  const p = new WorkerPool({
    workers: 2, listen: { host: '127.0.0.1', port: 0 }, preview: { host: '127.0.0.1', port: 0 },
    drainTimeoutMs: o.drainTimeoutMs ?? 5_000, health, onRequest: (r) => records.push(r),
  });
  t.after(async () => {
    await p.close();
    for (const u of Object.values(ups)) await u.close();
  });
  const blue = { color: 'blue' as const, version: 'v1', targets: [ups['blue-0'].target, ups['blue-1'].target] };
  const green = { color: 'green' as const, version: 'v2', targets: [ups['green-0'].target, ups['green-1'].target] };
  return { p, ups, health, records, blue, green };
}

test('two workers share the ports; a switch is applied when both acknowledged it, and 20 switches under keep-alive load fail 0', { timeout: 60_000 }, async (t) => {
  const { p, ups, records, blue, green } = await pool(t);
  p.swap(routes(blue, green));
  await p.start();
  const a = p.addresses();
  const live = `http://127.0.0.1:${a.live.port}`;
  assert.equal((await get(`${live}/`)).body.split(' ')[0], 'blue');
  assert.equal((await get(`http://127.0.0.1:${a.preview!.port}/`)).body.split(' ')[0], 'green');

  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const out = { ok: 0, failed: 0, errors: [] as string[], colours: { blue: 0, green: 0 } as Record<string, number> };
  let running = true;
  const loops = Array.from({ length: 32 }, async (_, i) => {
    while (running) {
      try {
        const r = await get(`${live}${i % 4 === 0 ? '/slow?ms=300' : '/'}`, agent);
        const c = r.body.split(' ')[0];
        if (r.status !== 200 || (c !== 'blue' && c !== 'green')) throw new Error(`${r.status} ${r.body}`);
        out.ok++;
        out.colours[c]++;
      } catch (err) {
        out.failed++;
        out.errors.push((err as Error).message);
      }
    }
  });
  await sleep(300);
  for (let i = 0; i < 20; i++) {
    const next = i % 2 === 0 ? routes(green, blue) : routes(blue, green);
    const { revision, drain } = p.swap(next);
    await p.applied(revision);
    // Applied means every worker: fresh connections (spread over both workers by the kernel) all see it.
    const fresh = await Promise.all(Array.from({ length: 8 }, () => get(`${live}/`, false)));
    for (const f of fresh) assert.equal(f.body.split(' ')[0], next.live!.color, `switch ${i + 1}: every worker routes to ${next.live!.color}`);
    assert.ok(drain);
    await sleep(100);
  }
  running = false;
  await Promise.all(loops);
  agent.destroy();
  assert.equal(out.failed, 0, out.errors.slice(0, 5).join('; '));
  assert.ok(out.colours.blue > 50 && out.colours.green > 50, JSON.stringify(out.colours));
  await sleep(150); // the last batch of records
  const served = p.served();
  assert.ok(served.every((n) => n > 0), `the kernel spread connections over both workers: ${served}`);
  assert.ok(Object.values(ups).every((u) => u.requests > 0), 'every upstream served');
  const now = Date.now();
  const s = p.stats.query('live', 'green', now - 60_000, now + 1_000);
  assert.ok(s.requests > 50, `records from the workers reach the pool's stats: ${s.requests}`);
  assert.ok(records.length >= out.ok, `request hook saw every request: ${records.length} of ${out.ok}`);
});

test('workers: a drain waits for every worker; health changes reach every worker', { timeout: 30_000 }, async (t) => {
  const { p, health, blue, green } = await pool(t, { drainTimeoutMs: 3_000 });
  p.swap(routes(blue, green));
  await p.start();
  const live = `http://127.0.0.1:${p.addresses().live.port}`;
  const slow = Array.from({ length: 6 }, () => get(`${live}/slow?ms=500`, false));
  await sleep(150);
  const { drain } = p.swap(routes(green, blue));
  const report = await drain!;
  for (const r of await Promise.all(slow)) assert.equal(r.body.split(' ')[0], 'blue', 'in-flight requests finished on blue');
  assert.equal(report.completed, true);
  assert.ok(report.durationMs >= 250, `the drain waited for the slow requests: ${report.durationMs}`);
  health.set('green-1', false);
  await sleep(100);
  const ids = new Set<string>();
  for (let i = 0; i < 16; i++) ids.add((await get(`${live}/`, false)).body);
  assert.deepEqual([...ids], ['green green-0'], 'no worker sends traffic to the instance marked down');
  assert.ok(p.inFlight('live') >= 0);
});

test('workers: a worker that dies is replaced; switches meanwhile are acknowledged by the living ones, then by all', { timeout: 30_000 }, async (t) => {
  const { p, blue, green } = await pool(t);
  p.swap(routes(blue, green));
  await p.start();
  const live = `http://127.0.0.1:${p.addresses().live.port}`;
  const dead = p.threads[1];
  await dead.terminate();
  const t0 = performance.now();
  const sw = p.swap(routes(green, blue));
  const report = await sw.applied;
  assert.ok(performance.now() - t0 < 2_000, 'a dead worker does not hold the switch up');
  assert.deepEqual(report.missing, []);
  for (let i = 0; i < 6; i++) assert.equal((await get(`${live}/`, false)).body.split(' ')[0], 'green');
  const deadline = Date.now() + 10_000;
  while (p.threads[1] === dead && Date.now() < deadline) await sleep(50);
  assert.notEqual(p.threads[1], dead, 'a new worker took its place');
  const back = p.swap(routes(blue, green));
  assert.equal((await back.applied).acknowledged.length, 2, 'both workers acknowledge again');
  for (let i = 0; i < 8; i++) assert.equal((await get(`${live}/`, false)).body.split(' ')[0], 'blue', 'the new worker has the table in force');
});

function post(url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'text/plain' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    req.on('error', reject);
    req.end(body);
  });
}

test('workers: a capture reaches every worker (also a replaced one); chosen POSTs come back with their body, others without', { timeout: 30_000 }, async (t) => {
  const { p, blue, green, records } = await pool(t);
  p.swap(routes(blue, green));
  await p.start();
  const live = `http://127.0.0.1:${p.addresses().live.port}`;
  p.setCapture(captureFromSpec({ methods: ['POST'], paths: ['/sha'], exclude: [], maxBodyBytes: 64, perEndpoint: 1_000, refreshMs: 1_000, maxEndpoints: 100, captureGapMs: 0, lookupGapMs: 0 }));
  await sleep(50);
  const dead = p.threads[1];
  await dead.terminate();
  const deadline = Date.now() + 10_000;
  while (p.threads[1] === dead && Date.now() < deadline) await sleep(50);
  assert.notEqual(p.threads[1], dead, 'a new worker took its place');
  await sleep(100);
  // Fresh connections: both workers take some of them.
  for (let i = 0; i < 12; i++) assert.equal(await post(`${live}/sha`, `body-${i}`), 200);
  assert.equal(await post(`${live}/other`, 'not-chosen'), 200);
  const deadline2 = Date.now() + 5_000;
  while (records.length < 13 && Date.now() < deadline2) await sleep(50);
  const copies = records.filter((r) => r.request !== undefined);
  assert.equal(copies.length, 12, 'every chosen POST was copied, by whichever worker served it');
  assert.deepEqual(copies.map((r) => r.request!.body!.toString()).sort(), Array.from({ length: 12 }, (_, i) => `body-${i}`).sort());
  assert.ok(copies.every((r) => Buffer.isBuffer(r.request!.body) && r.request!.path === '/sha'));
  assert.equal(records.find((r) => r.method === 'POST' && r.request === undefined)?.method, 'POST', 'the unchosen POST has no copy');
});

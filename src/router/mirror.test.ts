/**
 * Mirroring in the router against real upstreams: what is copied (methods, bodies), what is
 * counted, and that live answers never wait for, or change because of, the copies.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { Pool } from 'undici';
import { silentLogger } from '../lib/logger.ts';
import { DiffCounter, endpointOf, flatten, redactPath } from './mirror-diff.ts';
import { freezeTable, type MirrorSpec } from './route-table.ts';
import { Router } from './router.ts';
import { TestHealth } from '../../test/support/router.ts';
import { aboveNoise, judgeMirror } from '../gates/mirror-gate.ts';

interface App { port: number; seen: { method: string; path: string; body: string; mirror: boolean }[]; server: Server; hang: boolean }
const apps: App[] = [];
const routers: Router[] = [];
after(async () => {
  for (const r of routers) await r.close();
  for (const a of apps) { a.server.closeAllConnections(); await new Promise((r) => a.server.close(r)); }
});

/** A JSON app; `postStatus` is what POST /orders answers; `hang`: the app never answers mirrored copies. */
async function app(o: { postStatus: number; token?: string }): Promise<App> {
  const a: App = { port: 0, seen: [], server: null as unknown as Server, hang: false };
  a.server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const mirror = req.headers['x-cutover-mirror'] === '1';
      a.seen.push({ method: req.method ?? '', path: req.url ?? '', body, mirror });
      if (a.hang && mirror) return; // never answers a copy
      res.setHeader('content-type', 'application/json');
      if (req.method === 'POST') { res.statusCode = o.postStatus; res.end(JSON.stringify({ ok: o.postStatus < 300, got: body })); return; }
      res.end(JSON.stringify({ id: Math.random(), token: o.token ?? 'same', path: req.url }));
    });
  });
  await new Promise<void>((r) => a.server.listen(0, '127.0.0.1', r));
  a.port = (a.server.address() as AddressInfo).port;
  apps.push(a);
  return a;
}

const spec = (o: Partial<MirrorSpec> = {}): MirrorSpec => ({ id: `m-${Math.random()}`, sample: 1, methods: ['GET', 'HEAD'], maxBodyBytes: 65_536, headers: ['content-type'], ignore: [], queue: 100, concurrency: 4, timeoutMs: 2_000, ...o });

async function setup(live: App, cand: App, m: MirrorSpec): Promise<{ router: Router; pool: Pool }> {
  const router = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: 1_000, health: new TestHealth(), logger: silentLogger });
  routers.push(router);
  await router.start();
  router.swap(freezeTable({
    revision: 1,
    live: { color: 'blue', version: 'v1', targets: [{ id: 'blue-0', host: '127.0.0.1', port: live.port }] },
    preview: { color: 'green', version: 'v2', targets: [{ id: 'green-0', host: '127.0.0.1', port: cand.port }] },
    mirror: m,
  }));
  return { router, pool: new Pool(`http://127.0.0.1:${router.addresses().live.port}`, { connections: 4 }) };
}

async function waitCompared(router: Router, id: string, n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = router.mirrorReport(id);
    if (r && r.compared + r.skipped + r.liveErrors >= n && r.pending === 0) return;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`mirror did not compare ${n}: ${JSON.stringify(router.mirrorReport(id))}`);
}

test('flatten, endpoints and redaction: JSON by field path (arrays folded), others by hash, secrets never in examples', () => {
  const f = flatten({ status: 200, headers: ['Content-Type', 'application/json'], body: Buffer.from('{"a":{"b":1},"items":[{"id":1},{"id":2}],"e":[]}') }, ['content-type']);
  assert.deepEqual(Object.fromEntries(f), { status: '200', 'headers.content-type': 'application/json', 'body.a.b': '1', 'body.items[].id': '1,2', 'body.e': '[]' });
  assert.match(flatten({ status: 200, headers: [], body: Buffer.from('<html>') }, []).get('body')!, /^sha256:[0-9a-f]{64}$/);
  assert.equal(endpointOf('GET', '/users/42/orders/3f2c9a1e-2b4d-4c6e-8f00-123456789abc?x=1'), 'GET /users/:id/orders/:id');
  assert.equal(redactPath('/login?user=a&token=abc&api_key=1'), '/login?user=a&token=[redacted]&api_key=[redacted]');
  const c = new DiffCounter([], []);
  const ans = (token: string) => ({ status: 200, headers: ['content-type', 'application/json'], body: Buffer.from(JSON.stringify({ sessionToken: token })) });
  c.add('GET', '/me?password=x', ans('a'), ans('a'), ans('b'));
  const ex = c.endpoints()[0].fields[0].example!;
  assert.deepEqual(ex, { request: 'GET /me?password=[redacted]', live: '[redacted]', candidate: '[redacted]' });
  // The judgement: noise offsets raw differences, and chance (3 standard errors) is allowed for.
  assert.equal(aboveNoise({ raw: 100, noise: 100 }, 100), 0);
  assert.equal(aboveNoise({ raw: 3, noise: 0 }, 100) , 0);
  assert.ok(aboveNoise({ raw: 100, noise: 0 }, 100) > 0.6);
  assert.deepEqual(judgeMirror({ endpoints: [{ endpoint: 'GET /', samples: 50, fields: [{ field: 'body.x', raw: 50, noise: 0 }, { field: 'body.id', raw: 50, noise: 50 }] }] }, 0.01).failed.map((f) => f.field), ['body.x']);
});

test('GET and HEAD only by default: a POST that fails on the candidate is never copied; with POST configured, bodies are copied and the failure is counted', { timeout: 20_000 }, async () => {
  const live = await app({ postStatus: 201 });
  const cand = await app({ postStatus: 500 });
  const m1 = spec();
  const { router, pool } = await setup(live, cand, m1);
  for (let i = 0; i < 10; i++) {
    await (await pool.request({ path: '/orders', method: 'POST', body: `{"n":${i}}`, headers: { 'content-type': 'application/json' } })).body.text();
    await (await pool.request({ path: `/items/${i}`, method: 'GET' })).body.text();
  }
  await waitCompared(router, m1.id, 10);
  assert.equal(cand.seen.filter((s) => s.method === 'POST').length, 0, 'no POST reached the candidate');
  const r1 = router.mirrorReport(m1.id)!;
  assert.equal(r1.sampled, 10);
  assert.deepEqual(r1.endpoints.map((e) => e.endpoint), ['GET /items/:id']);

  const m2 = spec({ methods: ['GET', 'POST'] });
  router.swap(freezeTable({ ...router.table(), revision: 2, mirror: m2 }));
  for (let i = 0; i < 10; i++) {
    const res = await pool.request({ path: '/orders', method: 'POST', body: `{"n":${i}}`, headers: { 'content-type': 'application/json' } });
    assert.equal(res.statusCode, 201, 'the live answer is the live colour\'s');
    await res.body.text();
  }
  await waitCompared(router, m2.id, 10);
  const posts = cand.seen.filter((s) => s.method === 'POST');
  assert.equal(posts.length, 10);
  assert.deepEqual(posts.map((p) => p.body).sort(), Array.from({ length: 10 }, (_, i) => `{"n":${i}}`).sort(), 'request bodies are copied as sent');
  const ep = router.mirrorReport(m2.id)!.endpoints.find((e) => e.endpoint === 'POST /orders')!;
  const status = ep.fields.find((f) => f.field === 'status')!;
  assert.deepEqual({ raw: status.raw, noise: status.noise, live: status.example?.live, candidate: status.example?.candidate }, { raw: 10, noise: 0, live: '201', candidate: '500' });
  await pool.close();
});

test('live answers never wait for the copies: a candidate that never answers copies, a full queue drops and counts, every live answer is the live colour\'s', { timeout: 20_000 }, async () => {
  const live = await app({ postStatus: 201, token: 'live' });
  const cand = await app({ postStatus: 201, token: 'cand' });
  cand.hang = true;
  const m = spec({ queue: 5, concurrency: 1, timeoutMs: 10_000 });
  const { router, pool } = await setup(live, cand, m);
  const bodies = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const res = await pool.request({ path: `/x/${i}`, method: 'GET' });
    assert.equal(res.statusCode, 200);
    return JSON.parse(await res.body.text()) as { token: string; path: string };
  }));
  assert.ok(bodies.every((b, i) => b.token === 'live' && b.path === `/x/${i}`), 'each answer is the live colour\'s own, unchanged');
  const r = router.mirrorReport(m.id)!;
  assert.equal(r.sampled, 200);
  assert.ok(r.dropped >= 150, `the bounded queue dropped and counted copies: ${JSON.stringify({ ...r, endpoints: undefined })}`);
  assert.equal(r.compared, 0, 'nothing compared: the candidate never answered');
  assert.ok(r.pending <= 6);
  // Stats count only the live answers, never the copies.
  const s = router.stats.query('live', 'blue', Date.now() - 60_000, Date.now() + 1_000);
  assert.equal(s.requests, 200);
  assert.equal(router.stats.query('live', 'green', Date.now() - 60_000, Date.now() + 1_000).requests, 0);
  await pool.close();
});

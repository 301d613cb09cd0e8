import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { databaseSchema } from '../config/database.ts';
import { replaySample } from './replay.ts';
import { captureFromSpec } from '../router/capture-spec.ts';
import { endpointKey, REDACTED, SAMPLE_FILE, TrafficSample, type SampledRequest } from './traffic-sample.ts';

const cfg = (over: Record<string, unknown> = {}) => databaseSchema.parse({ url: 'postgres://h/db', compatibility: { sample: over } }).compatibility.sample;
const live = { status: 200, version: 'v1' };

test('redaction: credentials, every cookie value, secret query parameters and JSON/form fields; hop-by-hop headers dropped', () => {
  const s = new TrafficSample(cfg({ redactHeaders: ['x-tenant-secret'], redactFields: ['ssn'] }));
  const r = s.redact('POST', '/login?token=abc&page=2&api_key=k', [
    'Host', 'shop', 'Authorization', 'Bearer xyz', 'Cookie', 'sid=1; theme=dark', 'X-Tenant-Secret', 's3', 'Content-Type', 'application/json',
    'Content-Length', '50', 'X-Forwarded-For', '1.2.3.4', 'Accept', 'text/html',
  ], Buffer.from(JSON.stringify({ user: 'ann', password: 'hunter2', profile: { ssn: '123', refresh_token: 'r' } })), live);
  assert.equal(r.path, `/login?token=${encodeURIComponent(REDACTED)}&page=2&api_key=${encodeURIComponent(REDACTED)}`);
  assert.deepEqual(r.headers, [['Authorization', REDACTED], ['Cookie', `sid=${REDACTED}; theme=${REDACTED}`], ['X-Tenant-Secret', REDACTED], ['Content-Type', 'application/json'], ['Accept', 'text/html']]);
  assert.deepEqual(JSON.parse(Buffer.from(r.body ?? '', 'base64').toString()), { user: 'ann', password: REDACTED, profile: { ssn: REDACTED, refresh_token: REDACTED } });
  assert.deepEqual(r.redacted.sort(), ['body:password', 'body:refresh_token', 'body:ssn', 'cookie:sid', 'cookie:theme', 'header:authorization', 'header:x-tenant-secret', 'query:api_key', 'query:token']);
  const form = s.redact('POST', '/f', ['Content-Type', 'application/x-www-form-urlencoded'], Buffer.from('a=1&password=p'), live);
  assert.equal(Buffer.from(form.body ?? '', 'base64').toString(), `a=1&password=${encodeURIComponent(REDACTED)}`);
});

test('bounded: per endpoint (ids folded) and in total, oldest endpoint first', () => {
  assert.equal(endpointKey('GET', '/orders/123/items/550e8400-e29b-41d4-a716-446655440000?x=1'), 'GET /orders/:id/items/:id');
  const s = new TrafficSample(cfg({ maxRequests: 6, perEndpoint: 2, exclude: ['/admin'] }));
  for (let i = 0; i < 5; i++) s.add(s.redact('GET', `/orders/${i}`, [], null, live));
  assert.equal(s.size, 2);
  assert.deepEqual(s.all().map((r) => r.path), ['/orders/3', '/orders/4']);
  for (const p of ['/a', '/b', '/c']) { s.add(s.redact('GET', p, [], null, live)); s.add(s.redact('POST', p, [], null, live)); }
  assert.equal(s.size, 6);
  assert.ok(!s.all().some((r) => r.path.startsWith('/orders')), 'the least recently updated endpoint went first');
  assert.deepEqual(s.readOnly().map((r) => r.method), ['GET', 'GET', 'GET']);
});

test('the router is asked cheaply: methods, prefixes, and at most one copy per 10 ms', async () => {
  const { setTimeout: sleep } = await import('node:timers/promises');
  const s = new TrafficSample(cfg({ exclude: ['/admin'] }));
  const c = s.capture();
  assert.equal(c.wants('OPTIONS', '/x'), false, 'a method not configured');
  assert.equal(c.wants('DELETE', '/x'), true);
  assert.equal(c.wants('DELETE', '/y'), false, 'right after a copy: throttled');
  await sleep(15);
  assert.equal(c.wants('GET', '/admin/users'), false, 'an excluded prefix');
  await sleep(15);
  assert.equal(c.wants('GET', '/a'), true, 'an endpoint with room');
});

test('the capture travels as data: a router process rebuilds the same choice from its spec, up to perEndpoint copies per endpoint then one per second', async () => {
  const { setTimeout: sleep } = await import('node:timers/promises');
  const s = new TrafficSample(cfg({ exclude: ['/admin'], perEndpoint: 2, maxBodySize: 1_000 }));
  const spec = s.capture().spec!;
  assert.deepEqual(JSON.parse(JSON.stringify(spec)), spec, 'plain JSON');
  assert.equal(spec.maxBodyBytes, 1_000);
  const c = captureFromSpec(spec);
  assert.equal(c.maxBodyBytes, 1_000);
  assert.equal(c.wants('OPTIONS', '/x'), false, 'a method not configured');
  assert.equal(c.wants('DELETE', '/x'), true);
  assert.equal(c.wants('DELETE', '/y'), false, 'right after a copy: throttled');
  await sleep(15);
  assert.equal(c.wants('GET', '/admin/users'), false, 'an excluded prefix');
  await sleep(15);
  assert.equal(c.wants('GET', '/orders/1'), true);
  await sleep(15);
  assert.equal(c.wants('GET', '/orders/2'), true, 'the same endpoint (ids folded), second copy');
  await sleep(15);
  assert.equal(c.wants('GET', '/orders/3'), false, 'the endpoint is full: refreshed once a second only');
});

test('the router record is kept only for live answers below 500 with a complete body', () => {
  const s = new TrafficSample(cfg());
  const req = { path: '/p', rawHeaders: [], body: null, truncated: false };
  s.observe({ listener: 'live', color: 'blue', version: 'v1', method: 'GET', status: 200, durationMs: 1, request: req });
  s.observe({ listener: 'live', color: 'blue', version: 'v1', method: 'GET', status: 503, durationMs: 1, request: { ...req, path: '/q' } });
  s.observe({ listener: 'preview', color: 'green', version: 'v2', method: 'GET', status: 200, durationMs: 1, request: { ...req, path: '/r' } });
  s.observe({ listener: 'live', color: 'blue', version: 'v1', method: 'POST', status: 201, durationMs: 1, request: { ...req, path: '/s', body: Buffer.from('x'), truncated: true } });
  assert.deepEqual(s.all().map((r) => r.path), ['/p']);
});

test('persisted redacted in the state directory with mode 0600, and loaded again', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cutover-sample-'));
  try {
    const s = new TrafficSample(cfg(), { stateDir: dir });
    s.add(s.redact('GET', '/?token=t0p', ['Authorization', 'Basic c2VjcmV0'], null, live));
    s.flush();
    const file = path.join(dir, SAMPLE_FILE);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = readFileSync(file, 'utf8');
    assert.ok(!text.includes('t0p') && !text.includes('c2VjcmV0'));
    assert.equal(new TrafficSample(cfg(), { stateDir: dir }).size, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('replay judges against live: 5xx fails, 4xx fails where live answered 2xx, a redacted request\'s 4xx is not judged unless the replay supplies the credential', async () => {
  const server = createServer((req, res) => {
    const auth = req.headers.authorization;
    if (req.url === '/boom') { res.writeHead(500).end('db error'); return; }
    if (req.url === '/private') { res.writeHead(auth === 'Bearer test' ? 200 : 401).end(); return; }
    res.writeHead(req.url === '/missing' ? 404 : 200).end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const s = new TrafficSample(cfg());
    const reqs: SampledRequest[] = [
      s.redact('GET', '/boom', [], null, live),
      s.redact('GET', '/missing', [], null, live),
      s.redact('GET', '/missing', [], null, { status: 404, version: 'v1' }),
      s.redact('GET', '/private', ['Authorization', 'Bearer real'], null, live),
    ];
    const signal = new AbortController().signal;
    const out = await replaySample(base, reqs, { timeoutMs: 2_000, signal });
    assert.deepEqual(out.map((r) => r.outcome), ['failed', 'failed', 'passed', 'unjudged']);
    assert.match(out[0].reason, /^GET \/boom \(live answered 200\) → 500: db error$/);
    const withCredential = await replaySample(base, [reqs[3]], { timeoutMs: 2_000, signal, headers: { Authorization: 'Bearer test' } });
    assert.equal(withCredential[0].outcome, 'passed');
  } finally {
    server.close();
  }
});

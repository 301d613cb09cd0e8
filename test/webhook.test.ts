/**
 * Webhook notifications against real HTTP receivers: signed, in order, retried through a
 * receiver that fails and recovers, never blocking the pipeline, never logging the secret.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Writable } from 'node:stream';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { ConfigError } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { createLogger, silentLogger } from '../src/lib/logger.ts';
import { telemetryPlugin } from '../src/telemetry/plugin.ts';
import { Notifier, eventMatcher, type WebhookPayload } from '../src/telemetry/webhooks.ts';
import { WEBHOOKS_DB_FILE } from '../src/telemetry/outbox.ts';
import { notificationSchema } from '../src/config/notifications.ts';
import type { EventRecord } from '../src/store/types.ts';
import { SHOP_V1, TEST_TOKEN, configYaml, freePort, freePorts, instancesOf, killAll, tempDir, waitFor } from './helpers.ts';

const SECRET = 'whsec-0123456789abcdef';

interface Received { headers: http.IncomingHttpHeaders; raw: string; body: WebhookPayload; answered: number }

/** A receiver that answers `failFirst` requests with 503, then 200. */
async function receiver(failFirst: number): Promise<{ url: string; received: Received[]; close: () => Promise<void> }> {
  const received: Received[] = [];
  let n = 0;
  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { raw += c; });
    req.on('end', () => {
      const status = n++ < failFirst ? 503 : 200;
      received.push({ headers: req.headers, raw, body: JSON.parse(raw) as WebhookPayload, answered: status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hooks/SECRET-PATH-token`, received, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** What a receiver does: recompute the HMAC over `${timestamp}.${rawBody}` and compare in constant time. */
function verify(secret: string, r: Received): boolean {
  const ts = String(r.headers['x-cutover-timestamp']);
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(`${ts}.${r.raw}`).digest('hex')}`);
  const given = Buffer.from(String(r.headers['x-cutover-signature']));
  return expected.length === given.length && timingSafeEqual(expected, given) && Math.abs(Date.now() / 1000 - Number(ts)) < 300;
}

test('a deployment sends signed events in order, through a receiver that fails first and then recovers', async () => {
  const rx = await receiver(2);
  const t = tempDir();
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', destination: new Writable({ write(chunk, _enc, cb) { logs.push(String(chunk)); cb(); } }) });
  const extra = ['notifications:', `  - url: ${rx.url}`, `    secret: \${HOOK_SECRET}`, '    retryDelay: 50ms', '    timeout: 2s'].join('\n');
  const config = parseConfig(configYaml(await freePorts(), { instances: 1, extra }), { file: 'cutover.yaml', baseDir: t.dir, env: { HOOK_SECRET: SECRET } });
  const daemon = await Daemon.start(config, { logger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: [telemetryPlugin({ processMetrics: false })] });
  const client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN, actor: 'test' });
  try {
    await client.call('POST', '/deployments', { version: 'v1', path: SHOP_V1 });
    const done = await daemon.controller.current()!.done;
    assert.equal(done.status, 'succeeded');
    await waitFor(() => rx.received.some((r) => r.answered === 200 && r.body.type === 'deployment.finished'), { what: 'deployment.finished delivered' });

    // The first event was tried three times (503, 503, 200) under one delivery id.
    const first = rx.received.slice(0, 3);
    assert.deepEqual(first.map((r) => r.answered), [503, 503, 200]);
    assert.equal(new Set(first.map((r) => r.headers['x-cutover-delivery'])).size, 1);

    const delivered = rx.received.filter((r) => r.answered === 200);
    assert.deepEqual(delivered.map((r) => r.body.type), ['deployment.started', 'switch', 'deployment.finished'], 'default events, in order');
    const seqs = delivered.map((r) => r.body.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'strictly in seq order');
    for (const r of rx.received) {
      assert.ok(verify(SECRET, r), `valid signature on ${r.body.type}`);
      assert.ok(!verify('wrong-secret-0123456789', r));
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(r.headers['x-cutover-event'], r.body.type);
    }
    const fin = delivered[2].body;
    assert.equal(fin.app, 'test');
    assert.equal(fin.version, 'v1');
    assert.equal(fin.deployment, done.id);
    assert.equal(fin.id, `test-${fin.seq}`);
    assert.match(fin.text, /^\*test\* ✅ v1 succeeded: /, 'a Slack-compatible text line');

    const all = logs.join('');
    assert.ok(!all.includes(SECRET), 'the secret is never logged');
    assert.ok(!all.includes('SECRET-PATH'), 'the URL path (often a credential) is never logged');
    assert.match(all, /webhook delivered after retrying/);
  } finally {
    await client.close();
    await daemon.stop({ stopInstances: true });
    killAll(instancesOf(config.stateDir));
    await rx.close();
    t.cleanup();
  }
});

function event(seq: number, type: string): EventRecord {
  return { seq, time: Date.now(), type, deployment: 'd-1', phase: null, actor: 'cutover', reason: `${type} happened`, durationMs: null, color: 'blue', version: 'v1', data: null };
}

test('notify never waits for a receiver that hangs; close gives up after its grace', async () => {
  const server = http.createServer(() => { /* never answers */ });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const n = new Notifier({ app: 'a', targets: [notificationSchema.parse({ url, events: ['*'], timeout: '10s' })] });
  const t0 = performance.now();
  for (let i = 1; i <= 100; i++) n.notify(event(i, 'switch'));
  assert.ok(performance.now() - t0 < 50, 'enqueueing 100 events is immediate');
  assert.equal(n.pending(), 100);
  const c0 = performance.now();
  await n.close(100);
  assert.ok(performance.now() - c0 < 2_000, 'close does not wait for the hanging receiver');
  server.closeAllConnections();
  server.close();
});

test('a receiver that refuses for good (4xx) is not retried; the next event goes on', async () => {
  const got: string[] = [];
  const server = http.createServer((req, res) => {
    got.push(String(req.headers['x-cutover-event']));
    res.writeHead(req.headers['x-cutover-event'] === 'switch' ? 400 : 204).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const outcomes: string[] = [];
  const n = new Notifier({ app: 'a', targets: [notificationSchema.parse({ url, events: ['switch', 'rollback'], retryDelay: '10ms' })], onOutcome: (_t, o) => outcomes.push(o) });
  n.notify(event(1, 'switch'));
  n.notify(event(2, 'gate')); // not subscribed
  n.notify(event(3, 'rollback'));
  await waitFor(() => got.length === 2, { what: 'two deliveries' });
  await n.close();
  assert.deepEqual(got, ['switch', 'rollback']);
  assert.deepEqual(outcomes, ['failed', 'delivered']);
  server.close();
});

test('event globs and the notifications schema', () => {
  const m = eventMatcher(['deployment.*', 'rollback']);
  assert.ok(m('deployment.started') && m('deployment.finished') && m('rollback'));
  assert.ok(!m('rollback.restart') && !m('switch') && !m('deploymentX'));
  assert.ok(eventMatcher(['*'])('anything.at.all'));
  const t = notificationSchema.parse({ url: 'https://hooks.example.com/x' });
  assert.ok(t.events.includes('deployment.*') && t.events.includes('rollback'), 'default: the important events');
  assert.throws(() => parseConfig('environments: { process: { command: x } }\nnotifications:\n  - url: ftp://x\n', { file: 'c.yaml', baseDir: '/tmp' }), (e: unknown) => e instanceof ConfigError && /c\.yaml:3: notifications\[0\]\.url: expected an http/.test(e.message));
  assert.throws(() => parseConfig('environments: { process: { command: x } }\nnotifications:\n  - url: https://x.example\n    secret: short\n', { file: 'c.yaml', baseDir: '/tmp' }), /secret: use at least 16 characters/);
});

test('webhook events queued when the daemon stops are delivered, in order, after it starts again', { timeout: 120_000 }, async (tc) => {
  const t = tempDir();
  tc.after(t.cleanup);
  const hookPort = await freePort(); // nothing listens here yet: every attempt is refused
  const extra = ['notifications:', `  - url: http://127.0.0.1:${hookPort}/hooks/x`, '    events: [deployment.*]', '    retryDelay: 10s', '    timeout: 2s'].join('\n');
  const config = parseConfig(configYaml(await freePorts(), { instances: 1, extra }), { file: 'cutover.yaml', baseDir: t.dir });
  const start = () => Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: [telemetryPlugin({ processMetrics: false, dashboard: false })] });
  let daemon = await start();
  let stopped = false;
  tc.after(async () => { if (!stopped) await daemon.stop({ stopInstances: true }); killAll(instancesOf(config.stateDir)); });
  const d = await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
  assert.equal(d.status, 'succeeded');
  const queued = daemon.controller.events({ deployment: d.id }).filter((e) => e.type.startsWith('deployment.')).map((e) => `${config.app}-${e.seq}`);
  assert.equal(queued.length, 2, 'deployment.started and deployment.finished');
  await daemon.stop({ stopInstances: true });
  stopped = true;

  // The receiver comes up while the daemon is away; the next daemon delivers what the last one could not.
  const got: WebhookPayload[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { raw += c; });
    req.on('end', () => { got.push(JSON.parse(raw) as WebhookPayload); res.writeHead(204).end(); });
  });
  await new Promise<void>((r) => server.listen(hookPort, '127.0.0.1', r));
  tc.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  daemon = await start();
  stopped = false;
  await waitFor(() => got.length >= 2, { timeoutMs: 30_000, what: 'the queued events after the restart' });
  assert.deepEqual(got.slice(0, 2).map((p) => p.id), queued, 'same delivery ids, in order');
  assert.deepEqual(got.slice(0, 2).map((p) => p.type), ['deployment.started', 'deployment.finished']);
  await daemon.stop({ stopInstances: true });
  stopped = true;
  const db = new DatabaseSync(path.join(config.stateDir, WEBHOOKS_DB_FILE));
  assert.equal((db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n, 0, 'delivered events leave the outbox');
  db.close();
});

test('a state directory the outbox cannot use turns it into memory only; deliveries go on', async (tc) => {
  const t = tempDir();
  tc.after(t.cleanup);
  const notADir = path.join(t.dir, 'file');
  writeFileSync(notADir, 'x');
  const rx = await receiver(0);
  tc.after(rx.close);
  const n = new Notifier({ app: 'a', stateDir: notADir, targets: [notificationSchema.parse({ url: rx.url, events: ['*'] })] });
  n.notify(event(1, 'switch'));
  await waitFor(() => rx.received.length === 1, { what: 'the delivery' });
  await n.close();
  assert.equal(rx.received[0].body.id, 'a-1');
});

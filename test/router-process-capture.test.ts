/**
 * The traffic sample's capture with the router in its own process (issue 17 on top of issue 10):
 * the controller sends the capture as data over the control socket, a real `cutover router`
 * child process copies the requests it chooses (head and body) into the records it relays, and
 * not the others; a newer router taking over keeps copying, and the controller re-sends the spec
 * when it re-attaches.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { ChildRouterPlane, BIN } from '../src/router/child-router.ts';
import { SETTINGS_ENV, type RouterSettings } from '../src/router/router-process.ts';
import { captureFromSpec, type CaptureSpec } from '../src/router/capture-spec.ts';
import type { RequestRecord } from '../src/router/data-plane.ts';
import { pickFreePort } from '../src/environments/ports.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { TestHealth, routes, startUpstream, sleep } from './support/router.ts';
import { alive, killAll, routersOf, waitFor } from './helpers.ts';

const SPEC: CaptureSpec = {
  methods: ['POST'], paths: ['/sha'], exclude: ['/sha/private'], maxBodyBytes: 64,
  perEndpoint: 100, refreshMs: 1_000, maxEndpoints: 100, captureGapMs: 10, lookupGapMs: 1,
};
/** Longer than the spec's 10 ms between copies. */
const GAP_MS = 30;

async function settings(stateDir: string): Promise<RouterSettings> {
  const port = await pickFreePort('127.0.0.1', new Set());
  return {
    app: 't', id: 'r-capture', stateDir, version: '0', listen: { host: '127.0.0.1', port }, preview: null,
    drainTimeoutMs: 1_000, connectTimeoutMs: 1_000, responseTimeoutMs: 5_000,
    limits: { maxHeaderBytes: 16_384, maxHeaderCount: 100, maxUrlBytes: 8_192, maxBodyBytes: 0, headersTimeoutMs: 5_000, requestTimeoutMs: 10_000 },
    trustedProxies: [], tls: null,
    health: { path: '/health', intervalMs: 200, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 2 },
  };
}

async function post(base: string, p: string, body: string): Promise<number> {
  const res = await request(`${base}${p}`, { method: 'POST', headers: { 'content-type': 'text/plain', 'x-test': 'yes' }, body });
  await res.body.dump();
  await sleep(GAP_MS);
  return res.statusCode;
}

test('a router process copies a chosen POST with its body into the records the controller receives, not an unchosen one, also after a takeover', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-cap-'));
  const upstream = await startUpstream('blue', 0);
  const records: RequestRecord[] = [];
  const s = await settings(dir);
  const plane = new ChildRouterPlane({ settings: s, logger: silentLogger, health: new TestHealth(), onRequest: (r) => records.push(r) });
  t.after(async () => {
    await plane.close({ stopRouter: true }).catch(() => {});
    killAll(routersOf(dir));
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { adopted, pid } = await plane.attach();
  assert.equal(adopted, false);
  assert.notEqual(pid, process.pid, 'the router is a child process');
  await plane.swap(routes({ color: 'blue', targets: [upstream.target] })).applied;
  const base = `http://127.0.0.1:${s.listen.port}`;
  const captured = () => records.filter((r) => r.request !== undefined);

  // Nothing is copied before a capture is set.
  assert.equal(await post(base, '/sha', 'before'), 200);
  await waitFor(() => records.length >= 1, { what: 'the first record' });
  assert.equal(captured().length, 0);

  plane.setCapture(captureFromSpec(SPEC));
  await sleep(100); // the capture message travels on the control socket
  assert.equal(await post(base, '/sha', 'melon'), 200);
  assert.equal(await post(base, '/elsewhere', 'not-chosen-path'), 200);
  assert.equal(await post(base, '/sha/private', 'excluded'), 200);
  assert.equal(await post(base, '/sha', 'x'.repeat(100)), 200); // longer than maxBodyBytes
  await waitFor(() => records.length >= 5, { what: 'five records' });
  await sleep(100);
  const got = captured();
  assert.equal(got.length, 2, JSON.stringify(got.map((r) => r.request?.path)));
  const [first, long] = got.map((r) => r.request!);
  assert.equal(first.path, '/sha');
  assert.ok(Buffer.isBuffer(first.body));
  assert.equal(first.body.toString(), 'melon');
  assert.equal(first.truncated, false);
  const pairs = first.rawHeaders;
  assert.equal(pairs[pairs.findIndex((h) => h.toLowerCase() === 'x-test') + 1], 'yes');
  assert.equal(long.truncated, true, 'a body over maxBodyBytes is marked truncated');
  assert.ok(long.body !== null && long.body.length <= SPEC.maxBodyBytes);
  assert.ok(records.every((r) => r.request === undefined || r.method === 'POST'));

  // A newer router takes the listeners over: it keeps copying, and the controller re-attaches.
  const next = spawn(process.execPath, [BIN, 'router'], { env: { ...process.env, [SETTINGS_ENV]: JSON.stringify(s), CUTOVER_LOG_LEVEL: 'warn' }, stdio: 'ignore' });
  t.after(() => { next.kill('SIGKILL'); });
  await waitFor(() => !alive(pid), { what: 'the old router to drain and exit', timeoutMs: 20_000 });
  await waitFor(() => plane.routers()[0]?.pid === next.pid && !plane.routers()[0].stale, { what: 'the controller to re-attach to the new router', timeoutMs: 10_000 });
  await sleep(100);
  const before = captured().length;
  assert.equal(await post(base, '/sha', 'after-takeover'), 200);
  await waitFor(() => captured().length > before, { what: 'a copy from the new router' });
  assert.equal(captured().at(-1)!.request!.body!.toString(), 'after-takeover');

  // Stopping the capture stops the copies.
  plane.setCapture(null);
  await sleep(100);
  const n = records.length;
  const copies = captured().length;
  assert.equal(await post(base, '/sha', 'stopped'), 200);
  await waitFor(() => records.length > n, { what: 'the record of the last request' });
  assert.equal(captured().length, copies);
});

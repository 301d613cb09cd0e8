/**
 * Preview on the live listener through the daemon: `router.previewAccess` with a secret, a signed
 * value from `cutover preview-token` (audited), a manual deployment waiting with its candidate.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { request } from 'undici';
import { startHarness, type Harness } from './fixtures/judged/harness.ts';
import { FIXTURES } from './helpers.ts';

const SHADOW = path.join(FIXTURES, 'shadow');
let h: Harness;

before(async () => {
  h = await startHarness('', { releaseDir: SHADOW, router: 'previewAccess: { trusted: [10.0.0.0/8], secret: "a-test-secret-of-some-length" }' });
  assert.equal((await h.deploy('v1')).status, 'succeeded');
});
after(async () => { await h?.close(); });

async function version(headers: Record<string, string> = {}): Promise<string> {
  const res = await request(`http://127.0.0.1:${h.ports.live}/version`, { headers });
  return ((await res.body.json()) as { version: string }).version;
}

test('a signed value from `cutover preview-token` shows the waiting candidate on the live listener; unsigned values and everyone else get live', { timeout: 60_000 }, async () => {
  await h.client.call('POST', '/deployments', { version: 'v2', path: SHADOW, manual: true });
  for (let i = 0; i < 200 && h.daemon.controller.current()?.deployment.status !== 'awaiting-promotion'; i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal(h.daemon.controller.current()?.deployment.status, 'awaiting-promotion');

  const out = await h.cli(['preview-token', '--ttl', '10m', '--json']);
  assert.equal(out.code, 0, out.stderr);
  const t = JSON.parse(out.stdout) as { header: string; cookie: string; value: string; expiresAt: number };
  assert.equal(t.header, 'x-cutover-preview');
  assert.ok(t.expiresAt > Date.now() + 9 * 60_000 && t.expiresAt <= Date.now() + 10 * 60_000);
  assert.equal(await version(), 'v1');
  assert.equal(await version({ [t.header]: t.value }), 'v2');
  assert.equal(await version({ cookie: `${t.cookie}=${t.value}` }), 'v2');
  assert.equal(await version({ [t.header]: '1' }), 'v1', '127.0.0.1 is not trusted: an unsigned value is ignored');
  const human = await h.cli(['preview-token']);
  assert.match(human.stdout, /curl -H 'x-cutover-preview: \d+\.[\w-]+' http:\/\/127\.0\.0\.1:\d+\//);
  assert.ok(h.daemon.controller.events({ limit: 10_000 }).some((e) => e.type === 'audit' && /signed preview value valid until/.test(e.reason)), 'minting is audited');
  const bad = await h.cli(['preview-token', '--ttl', '30d']);
  assert.equal(bad.code, 2, bad.stdout + bad.stderr);
  await h.client.call('POST', '/abort', {});
  await h.daemon.controller.current()?.done;
});

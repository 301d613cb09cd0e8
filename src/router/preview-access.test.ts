/**
 * Preview on the live listener: a header or cookie reaches the preview colour only from a trusted
 * address, or with a signed, unexpired value; anything else is served live as usual.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Pool } from 'undici';
import { silentLogger } from '../lib/logger.ts';
import { Router } from './router.ts';
import { signPreviewValue, verifyPreviewValue } from './preview-access.ts';
import { routes, startUpstream, TestHealth, type TestUpstream } from '../../test/support/router.ts';

const SECRET = 'a-long-enough-test-secret';
let ups: TestUpstream[] = [];
const routers: Router[] = [];
before(async () => { ups = await Promise.all([startUpstream('blue', 0), startUpstream('green', 0)]); });
after(async () => {
  for (const r of routers) await r.close();
  await Promise.all(ups.map((u) => u.close()));
});

async function router(trusted: string[], secret: string | null): Promise<Pool> {
  const r = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: 1_000, health: new TestHealth(), logger: silentLogger, previewAccess: { header: 'x-cutover-preview', cookie: 'cutover_preview', trusted, secret } });
  routers.push(r);
  await r.start();
  r.swap(routes({ color: 'blue', targets: [ups[0].target] }, { color: 'green', targets: [ups[1].target] }));
  return new Pool(`http://127.0.0.1:${r.addresses().live.port}`);
}

async function colour(pool: Pool, headers: Record<string, string> = {}): Promise<string> {
  const res = await pool.request({ path: '/', method: 'GET', headers });
  return (await res.body.text()).split(' ')[0];
}

test('signed values: valid until they expire, bound to the secret, compared in constant time', () => {
  const v = signPreviewValue(SECRET, Date.now() + 60_000);
  assert.ok(verifyPreviewValue(SECRET, v));
  assert.ok(!verifyPreviewValue('another-secret-of-length', v));
  assert.ok(!verifyPreviewValue(SECRET, signPreviewValue(SECRET, Date.now() - 1_000)));
  assert.ok(!verifyPreviewValue(SECRET, `${v.split('.')[0]}9.${v.split('.')[1]}`), 'a changed expiry breaks the signature');
  assert.ok(!verifyPreviewValue(SECRET, 'garbage'));
});

test('from a trusted address, the header or the cookie shows the preview on the live listener; without it, live', async () => {
  const pool = await router(['127.0.0.0/8'], null);
  assert.equal(await colour(pool), 'blue');
  assert.equal(await colour(pool, { 'x-cutover-preview': '1' }), 'green');
  assert.equal(await colour(pool, { cookie: 'a=b; cutover_preview=1' }), 'green');
  await pool.close();
});

test('from an untrusted address only a signed, unexpired value shows the preview; others are served live', async () => {
  const pool = await router(['10.0.0.0/8'], SECRET);
  assert.equal(await colour(pool, { 'x-cutover-preview': '1' }), 'blue', 'an unsigned value from outside is ignored');
  assert.equal(await colour(pool, { 'x-cutover-preview': signPreviewValue(SECRET, Date.now() + 60_000) }), 'green');
  assert.equal(await colour(pool, { cookie: `cutover_preview=${signPreviewValue(SECRET, Date.now() + 60_000)}` }), 'green');
  assert.equal(await colour(pool, { 'x-cutover-preview': signPreviewValue(SECRET, Date.now() - 5_000) }), 'blue', 'expired');
  assert.equal(await colour(pool, { 'x-cutover-preview': signPreviewValue('some-other-secret-value', Date.now() + 60_000) }), 'blue', 'signed by another secret');
  await pool.close();
});

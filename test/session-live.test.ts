/**
 * The `session` gate's live replay: real visitors' signed-in requests (Cookie) are mirrored to the
 * candidate; a candidate refusing sessions live accepted fails. Redis on 127.0.0.1:6379 is the
 * shared session store of the `redis` releases of test/fixtures/shadow/server.js.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { createClient } from 'redis';
import { startHarness, type Harness } from './fixtures/judged/harness.ts';
import { FIXTURES } from './helpers.ts';

const SHADOW = path.join(FIXTURES, 'shadow');
const PREFIX = `cutover-test-${randomBytes(4).toString('hex')}:`;
let h: Harness;
let cookie: string;

before(async () => {
  h = await startHarness([
    'gates:',
    '  - name: live-sessions',
    '    session: { live: { minRequests: 30, duration: 15s } }',
  ].join('\n'), { releaseDir: SHADOW, env: { FIXTURE_REDIS_PREFIX: PREFIX } });
  const first = await h.deploy('v1-redis');
  assert.equal(first.status, 'succeeded', JSON.stringify(first.error));
  // A visitor signs in on live; its requests carry the session cookie from now on.
  const res = await request(`http://127.0.0.1:${h.ports.live}/login`, { method: 'POST' });
  const sc = res.headers['set-cookie'];
  cookie = String(Array.isArray(sc) ? sc[0] : sc).split(';')[0];
  await res.body.dump();
});
after(async () => {
  await h?.close();
  const c = createClient({ url: 'redis://127.0.0.1:6379' });
  await c.connect();
  const keys = await c.keys(`${PREFIX}*`);
  if (keys.length > 0) await c.del(keys);
  await c.quit();
});

async function deployWithSignedInTraffic(version: string) {
  const signedIn = h.liveLoad({ rate: 60, connections: 2, path: '/me', headers: { cookie } });
  const anonymous = h.liveLoad({ rate: 40, connections: 2, path: '/api/items' });
  await new Promise((r) => setTimeout(r, 200));
  const d = await h.deploy(version);
  signedIn.stop();
  anonymous.stop();
  await signedIn.done;
  await anonymous.done;
  const e = h.events(d.id).find((x) => x.type === 'gate' && x.data?.gate === 'live-sessions');
  assert.ok(e);
  return { d, e };
}

test('live sessions replayed to a release that keeps sessions in memory are refused: the gate fails with the loss rate and an example', { timeout: 60_000 }, async () => {
  const { d, e } = await deployWithSignedInTraffic('v2-memory');
  assert.equal(d.status, 'failed');
  assert.match(e.reason, /live-sessions: \d+ live request\(s\) with credentials replayed to the candidate \w+ \(v2-memory\): \d+ refused \(session loss 100\.0% > 0\.0%\); e\.g\. GET \/me: live 200 vs candidate 401/);
  const v = e.data?.values as { replayed: number; lost: number };
  assert.ok(v.replayed >= 30 && v.lost === v.replayed, JSON.stringify(v));
});

test('with the shared store every live session is accepted; anonymous requests are not replayed', { timeout: 60_000 }, async () => {
  const { d, e } = await deployWithSignedInTraffic('v3-redis');
  assert.equal(e.data?.outcome, 'passed', e.reason);
  assert.equal(d.status, 'succeeded');
  assert.match(e.reason, /session loss 0\.0% \(limit 0\.0%\)/);
  const seen = h.requestLog('v3-redis');
  assert.ok(seen.some((l) => l === 'mirror GET /me'));
  assert.ok(!seen.some((l) => l === 'mirror GET /api/items'), 'requests without credentials are not replayed');
});

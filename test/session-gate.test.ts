/**
 * Session continuity: the `session` gate creates sessions on the live colour and replays them to
 * the candidate. A release keeping sessions in process memory is refused; one using the shared
 * Redis store (127.0.0.1:6379) passes. Releases of test/fixtures/shadow/server.js.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import { startHarness, type Harness } from './fixtures/judged/harness.ts';
import { FIXTURES } from './helpers.ts';

const SHADOW = path.join(FIXTURES, 'shadow');
const PREFIX = `cutover-test-${randomBytes(4).toString('hex')}:`;
let h: Harness;

before(async () => {
  h = await startHarness([
    'gates:',
    '  - name: sessions',
    '    session: { login: { method: POST, path: /login }, check: { path: /me, expect: { status: 200 } }, sessions: 3 }',
  ].join('\n'), { releaseDir: SHADOW, env: { FIXTURE_REDIS_PREFIX: PREFIX } });
  const first = await h.deploy('v1-redis');
  assert.equal(first.status, 'succeeded', JSON.stringify(first.error));
});
after(async () => {
  await h?.close();
  const c = createClient({ url: 'redis://127.0.0.1:6379' });
  await c.connect();
  const keys = await c.keys(`${PREFIX}*`);
  if (keys.length > 0) await c.del(keys);
  await c.quit();
});

function gate(id: string) {
  const e = h.events(id).find((x) => x.type === 'gate' && x.data?.gate === 'sessions');
  assert.ok(e);
  return e;
}

test('a release that keeps sessions in memory fails the session gate: live sessions are refused with 401', { timeout: 60_000 }, async () => {
  const d = await h.deploy('v2-memory');
  assert.equal(d.status, 'failed');
  const e = gate(d.id);
  assert.match(e.reason, /3 session\(s\) created on live with POST \/login, replayed to the candidate \w+ \(v2-memory\) with GET \/me: 3 refused \(3 auth failure\(s\), first 401; session loss 100%\)/);
  assert.deepEqual({ ...(e.data?.values as Record<string, unknown>), durationMs: 0, examples: undefined }, { sessions: 3, accepted: 0, refused: 3, authFailures: 3, sessionLossRate: 1, durationMs: 0, examples: undefined });
  assert.equal(h.daemon.controller.status().live?.version, 'v1-redis');
});

test('a release with the shared Redis store passes: every live session is accepted by the candidate', { timeout: 60_000 }, async () => {
  const d = await h.deploy('v3-redis');
  const e = gate(d.id);
  assert.equal(e.data?.outcome, 'passed', e.reason);
  assert.match(e.reason, /all accepted in [\d.]+ms \(session loss 0%\)/);
  assert.equal(d.status, 'succeeded');
});

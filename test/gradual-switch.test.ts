/**
 * Gradual switch in the real pipeline: `switch.steps` move live traffic by request share with a
 * router-set visitor cookie; analysis judges every step; a failed step or a rollback returns the
 * share to 0 % at once; no request fails at any step change. Releases of test/fixtures/shadow.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Pool } from 'undici';
import { startHarness, type Harness } from './fixtures/judged/harness.ts';
import { FIXTURES } from './helpers.ts';
import type { EventRecord } from '../src/store/types.ts';

const SHADOW = path.join(FIXTURES, 'shadow');
let h: Harness;
let pool: Pool;

before(async () => {
  h = await startHarness([
    'switch: { steps: [20%, 50%], stepDuration: 12s, stickiness: cookie }',
    'analysis: { window: 2s, interval: 1s, minRequests: 5, maxLatency: { p95: false, p99: false } }',
  ].join('\n'), { releaseDir: SHADOW });
  const first = await h.deploy('v1');
  assert.equal(first.status, 'succeeded');
  pool = new Pool(`http://127.0.0.1:${h.ports.live}`, { connections: 4 });
});
after(async () => {
  await pool?.close();
  await h?.close();
});

async function visit(cookie?: string): Promise<{ version: string; cookie: string | null }> {
  const res = await pool.request({ path: '/version', method: 'GET', headers: cookie ? { cookie } : {} });
  const body = JSON.parse(await res.body.text()) as { version: string };
  const sc = res.headers['set-cookie'];
  const first = Array.isArray(sc) ? sc[0] : sc;
  return { version: body.version, cookie: first ? first.split(';')[0] : null };
}


async function deploying(version: string) {
  await h.daemon.controller.current()?.done; // a failed test before must not block this one
  await h.client.call('POST', '/deployments', { version, path: SHADOW });
  const cur = h.daemon.controller.current();
  assert.ok(cur);
  return { id: cur.deployment.id, done: cur.done };
}

async function waitEvent(id: string, pred: (e: EventRecord) => boolean, timeoutMs = 20_000): Promise<EventRecord> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const e = h.events(id).find(pred);
    if (e) return e;
    if (Date.now() > until) throw new Error(`no such event: ${h.events(id).map((x) => `${x.type}: ${x.reason}`).join('\n')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const stepAt = (share: number) => (e: EventRecord) => e.type === 'switch.step' && e.data?.share === share;

test('at 20 % a gradual switch sends 20 ± 5 % of new visitors, each keeps its colour, the share grows without moving green visitors back, 0 failed requests', { timeout: 90_000 }, async () => {
  const load = h.liveLoad({ rate: 100, connections: 4, path: '/' });
  const d = await deploying('v2');
  await waitEvent(d.id, stepAt(0.2));
  assert.deepEqual(h.daemon.controller.status().router.split, { color: 'green', share: 0.2 }, 'status shows the share in force');
  let onNew = 0;
  const visitors: { cookie: string; version: string }[] = [];
  for (let batch = 0; batch < 50; batch++) {
    for (const v of await Promise.all(Array.from({ length: 20 }, () => visit()))) {
      assert.ok(v.cookie?.startsWith('cutover_visitor='), 'a new visitor gets the router\'s cookie');
      if (v.version === 'v2') onNew++;
      if (visitors.length < 40) visitors.push({ cookie: v.cookie!, version: v.version });
    }
  }
  assert.ok(!h.events(d.id).some(stepAt(0.5)), 'the 1000 visits all happened during the 20 % step');
  assert.ok(onNew >= 150 && onNew <= 250, `${onNew} of 1000 new visitors on v2 at 20 %`);
  for (const v of visitors) {
    const again = await Promise.all([visit(v.cookie), visit(v.cookie), visit(v.cookie)]);
    assert.deepEqual(again.map((x) => x.version), [v.version, v.version, v.version], 'a visitor keeps its colour');
  }
  assert.ok(!h.events(d.id).some(stepAt(0.5)), 'all of this happened during the 20 % step');

  assert.match((await h.cli(['status'])).stdout, /gradual switch: 20 % of live traffic on green/);
  await waitEvent(d.id, stepAt(0.5), 30_000);
  for (const v of visitors.filter((x) => x.version === 'v2')) assert.equal((await visit(v.cookie)).version, 'v2', 'still on v2 at 50 %');

  const rec = await d.done;
  load.stop();
  const l = await load.done;
  assert.equal(rec.status, 'succeeded', JSON.stringify(rec.error));
  assert.equal(l.byClass['5xx'] + l.byClass.failed, 0, `no failed request across two step changes and the switch (${l.requests} requests)`);
  const evs = h.events(d.id);
  const verdicts = evs.filter((e) => e.type === 'switch.step.verdict');
  assert.equal(verdicts.length, 2, 'every step was judged');
  assert.ok(verdicts.every((e) => e.data?.outcome === 'passed'));
  assert.ok(evs.some((e) => e.type === 'analysis' && e.data?.step === 1 && (e.data?.auth as Record<string, unknown> | undefined)?.blue !== undefined), 'step analysis shows per-colour auth figures');
  for (const v of visitors) assert.equal((await visit(v.cookie)).version, 'v2', 'after the switch everyone is on v2');
});

test('a release failing at the first step goes back to 0 % at once and is rolled back; nothing failed at the step changes', { timeout: 90_000 }, async () => {
  const load = h.liveLoad({ rate: 100, connections: 4, paths: ['/api/items'] });
  const d = await deploying('v3-err50');
  const rec = await d.done;
  load.stop();
  const l = await load.done;
  assert.equal(rec.status, 'rolled-back');
  assert.match(rec.error?.message ?? '', /step 1\/3 at 20 % failed: error rate/);
  const evs = h.events(d.id);
  const back = evs.find((e) => e.type === 'switch.step' && e.data?.share === 0);
  assert.ok(back, 'the share went back to 0 %');
  assert.ok(!evs.some(stepAt(0.5)), 'the second step never started');
  assert.equal(h.daemon.controller.status().live?.version, 'v2');
  assert.equal(l.byClass.failed, 0, 'no request failed at a step change (the 5xx are the release\'s own answers)');
  for (let i = 0; i < 100; i++) assert.equal((await visit()).version, 'v2');
});

test('rollback from the second step: 0 % in one swap, the deployment ends rolled back, 0 failed requests', { timeout: 90_000 }, async () => {
  const load = h.liveLoad({ rate: 100, connections: 4, path: '/' });
  const d = await deploying('v4');
  await waitEvent(d.id, stepAt(0.5));
  const r = await h.cli(['rollback']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (let i = 0; i < 200; i++) assert.equal((await visit()).version, 'v2', 'every new visitor is on v2 right after the rollback');
  const rec = await d.done;
  load.stop();
  const l = await load.done;
  assert.equal(rec.status, 'rolled-back');
  assert.equal(l.byClass['5xx'] + l.byClass.failed, 0);
  const rb = h.events(d.id).find((e) => e.type === 'rollback');
  assert.ok(rb && rb.data?.share === 0, 'recorded as a rollback to 0 %');
  assert.equal(h.daemon.controller.status().live?.version, 'v2');
  const env = h.daemon.controller.status().environments[rec.color];
  assert.notEqual(env.version, 'v4', 'the candidate was stopped');
  assert.ok(env.instances.length === 0 || env.role === 'standby', `${rec.color} is empty or the warm standby again (${env.role} ${env.version})`);
});

/**
 * Gates in the real pipeline: an in-process daemon, real instance processes of
 * test/fixtures/judged/server.js (behaviour chosen by the version), the CLI run against it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { isCutoverError } from '../src/lib/errors.ts';
import { startHarness, JUDGED, type Harness } from './fixtures/judged/harness.ts';

let h: Harness;

before(async () => {
  h = await startHarness([
    'gates:',
    '  - name: version',
    '    http: { path: /version, expect: { status: 200, json: { version: "{version}" } } }',
    '  - name: root',
    '    http: { path: /, expect: { status: 200 } }',
    '  - name: echo',
    '    http: { method: POST, path: /echo, body: ping, expect: { bodyContains: ping, maxLatency: 2s } }',
  ].join('\n'));
  const first = await h.deploy('v1');
  assert.equal(first.status, 'succeeded');
});
after(async () => { await h?.close(); });

function live() {
  const s = h.daemon.controller.status();
  return { color: s.live?.color, version: s.live?.version };
}

test('a release whose / answers 500 never receives a live request: gates fail, deploy exits 1 naming the gate and its values', async () => {
  const load = h.liveLoad({ rate: 80 });
  await new Promise((r) => setTimeout(r, 300));
  const r = await h.cli(['deploy', 'v2-root500', '--path', JUDGED]);
  await new Promise((r) => setTimeout(r, 300));
  load.stop();
  const l = await load.done;

  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /✓ version: GET \/version → 200 in [\d.]+ms; json matches \{"version":"v2-root500"\}/);
  assert.match(r.stdout, /✗ root: GET \/ → 500 in [\d.]+ms: status 500 \(expected 200\)/);
  assert.match(r.stdout, /– echo: not run \(gate root failed\)/);
  assert.match(r.stdout, /✗ v2-root500 failed: gates failed: gate root failed: GET \/ → 500 in [\d.]+ms: status 500 \(expected 200\); traffic untouched/);
  assert.deepEqual(live(), { color: 'blue', version: 'v1' });
  assert.equal(h.daemon.controller.status().environments.green.instances.length, 0, 'the candidate was stopped');

  // The candidate's own request log: the gates reached it, the live load never did.
  const seen = h.requestLog('v2-root500');
  assert.ok(seen.includes('- GET /version') && seen.includes('- GET /'), `gate requests reached the candidate: ${seen.join(' | ')}`);
  assert.deepEqual(seen.filter((l) => l.startsWith('live')), [], 'no live-listener request reached the candidate');
  assert.ok(h.requestLog('v1').filter((l) => l.startsWith('live')).length > 20, 'the live load ran (on v1)');
  assert.equal(l.byClass['5xx'] + l.byClass.failed, 0, 'no live request failed');

  // Every gate result is an event with values and thresholds.
  const d = h.daemon.controller.history({ limit: 1 })[0];
  assert.equal(d.gates, 'failed');
  const gate = h.events(d.id).find((e) => e.type === 'gate' && e.data?.gate === 'root');
  assert.ok(gate);
  assert.deepEqual({ ...(gate.data as Record<string, unknown>), values: undefined }, { gate: 'root', kind: 'http', outcome: 'failed', target: 'preview', thresholds: { status: [200] }, values: undefined });
  assert.equal((gate.data!.values as { status: number }).status, 500);
});

test('--manual with a failed gate: the candidate waits with gates=failed, promote refuses, promote --force switches and is recorded', async () => {
  const started = await h.client.call<{ deployment: { id: string } }>('POST', '/deployments', { version: 'v3-root500', path: JUDGED, manual: true });
  const id = started.deployment.id;
  const cur = h.daemon.controller.current()!;
  for (let i = 0; i < 200 && h.daemon.controller.current()?.deployment.status !== 'awaiting-promotion'; i++) await new Promise((r) => setTimeout(r, 25));
  const waiting = h.daemon.controller.current()!.deployment;
  assert.equal(waiting.status, 'awaiting-promotion');
  assert.equal(waiting.gates, 'failed');
  assert.deepEqual(live(), { color: 'blue', version: 'v1' }, 'traffic untouched while it waits');
  const wait = h.events(id).find((e) => e.type === 'promote.waiting');
  assert.match(wait!.reason, /the gates of v3-root500 on green failed; it waits: `cutover promote --force` switches anyway/);

  await assert.rejects(h.client.call('POST', '/promote', {}), (e: unknown) => isCutoverError(e, 'CUTOVER_ERR_GATE_FAILED'));
  const refused = await h.cli(['promote']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /the gates of v3-root500 failed; promote refuses it unless forced/);

  const forced = await h.cli(['promote', '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /promoted v3-root500 on green \(forced\)/);
  const done = await cur.done;
  assert.equal(done.status, 'succeeded');
  assert.equal(done.forced, true);
  assert.deepEqual(live(), { color: 'green', version: 'v3-root500' });
  const events = h.events(id);
  assert.ok(events.some((e) => e.type === 'promote' && /promoted v3-root500 \(forced\)/.test(e.reason)));
  assert.ok(events.some((e) => e.type === 'switch' && e.data?.forced === true));
  assert.ok(h.daemon.controller.events({ limit: 10_000 }).some((e) => e.type === 'audit' && /promote --force/.test(e.reason) && e.data?.deployment === id));
  const verify = events.find((e) => e.type === 'phase' && e.phase === 'verify');
  assert.match(verify!.reason, /gate root failed: GET \/ → 500 .*\(not rolled back: the promotion was forced\)/);
});

test('post-switch smoke: the http gates run again on the live listener, and a failure there rolls back', async () => {
  const good = await h.deploy('v4');
  assert.equal(good.status, 'succeeded');
  assert.deepEqual(live(), { color: 'blue', version: 'v4' });
  const smoke = h.events(good.id).filter((e) => e.type === 'gate' && e.phase === 'verify');
  assert.deepEqual(smoke.map((e) => [e.data?.gate, e.data?.target, e.data?.outcome]), [['version', 'live', 'passed'], ['root', 'live', 'passed'], ['echo', 'live', 'passed']]);

  // /version of a "hostfail" release breaks only when reached through the live listener.
  const bad = await h.deploy('v5-hostfail');
  assert.equal(bad.status, 'rolled-back');
  assert.equal(bad.gates, 'passed', 'it passed its gates on the preview listener');
  assert.match(bad.error!.message, /verify failed: post-switch smoke on the live listener: gate version failed: GET \/version → 500/);
  assert.deepEqual(live(), { color: 'blue', version: 'v4' });
  const rb = h.events(bad.id).find((e) => e.type === 'rollback');
  assert.match(rb!.reason, /automatic rollback: verify failed: .*live green \(v5-hostfail\) → blue \(v4\)/);
});

/**
 * `cutover drill`: live flips to the warm standby and back under probe load; the report gives
 * the time of each flip and the failed probes, and the drill is refused when it could hurt.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { isCutoverError } from '../src/lib/errors.ts';
import type { DrillReport } from '../src/analysis/drill.ts';
import { startHarness, JUDGED, type Harness } from './fixtures/judged/harness.ts';

let h: Harness;

before(async () => {
  h = await startHarness(['gates:', '  - name: version', '    http: { path: /version, expect: { json: { version: "{version}" } } }'].join('\n'), { instances: 2 });
});
after(async () => { await h?.close(); });

test('a drill request with a bad field is refused with 400 naming the field', async () => {
  for (const [body, field] of [[{ rate: -5 }, 'rate'], [{ connections: 1.5 }, 'connections'], [{ path: 'x' }, 'path'], [{ holdMs: '1s' }, 'holdMs'], [{ speed: 1 }, 'speed']] as const) {
    await assert.rejects(h.client.call('POST', '/drill', body), (e: unknown) =>
      isCutoverError(e, 'CUTOVER_ERR_BAD_REQUEST') && (e as { details?: { field?: string } }).details?.field === field && (e as Error).message.startsWith(`${field}: `));
  }
});

test('without a warm standby the drill is refused and nothing moves', async () => {
  assert.equal((await h.deploy('v1')).status, 'succeeded');
  const r = await h.cli(['drill']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /a drill needs a live colour and a warm standby/);
  assert.equal(h.daemon.controller.status().live!.version, 'v1');
});

test('drill --json: two flips under probe load, each well under 1 s, 0 failed probes; live ends where it began', async () => {
  assert.equal((await h.deploy('v2')).status, 'succeeded');
  const before = h.daemon.controller.status();
  const r = await h.cli(['drill', '--json', '--rate', '100', '--hold', '300ms']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as DrillReport;
  assert.equal(report.outcome, 'passed');
  assert.deepEqual(report.flips.map((f) => [f.from.version, f.to.version]), [['v2', 'v1'], ['v1', 'v2']]);
  for (const f of report.flips) assert.ok(f.ms < 1_000, `flip took ${f.ms}ms`);
  assert.equal(report.probes.failed, 0);
  assert.ok(report.probes.sent >= 50, `probes sent: ${report.probes.sent}`);
  const after = h.daemon.controller.status();
  assert.deepEqual([after.live!.color, after.live!.version], [before.live!.color, before.live!.version]);
  assert.equal(after.standby!.state, 'warm');

  const events = h.daemon.controller.events({ limit: 10_000 });
  const rollbacks = events.filter((e) => e.type === 'rollback' && e.reason.startsWith('drill:'));
  assert.equal(rollbacks.length, 2);
  assert.ok(rollbacks.every((e) => typeof e.durationMs === 'number'));
  const drill = events.filter((e) => e.type === 'drill').at(-1)!;
  assert.match(drill.reason, /^drill passed: (blue|green) → (blue|green) in [\d.]+ms, (blue|green) → (blue|green) in [\d.]+ms; \d+ probe\(s\), 0 failed/);
  // Probes went through the live listener to both colours: v1 served live requests during the hold.
  assert.ok(h.requestLog('v1').length > 0);
});

test('drill (human): one line per flip, the probes, and the verdict; exit 0', async () => {
  const r = await h.cli(['drill', '--hold', '200ms']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /✓ (blue|green) \(v2\) → (blue|green) \(v1\)  [\d.]+ms\n/);
  assert.match(r.stdout, /✓ (blue|green) \(v1\) → (blue|green) \(v2\)  [\d.]+ms\n/);
  assert.match(r.stdout, /probes: \d+ sent to \/ at 50 req\/s, 0 failed/);
  assert.match(r.stdout, /✓ drill passed: time to switch [\d.]+ms \(target < 1000ms\), 0 failed probes/);
});

test('no deployment may start during a drill, and no drill during a deployment', async () => {
  const drill = h.client.call<DrillReport>('POST', '/drill', { holdMs: 800 });
  await new Promise((r) => setTimeout(r, 450));
  await assert.rejects(h.client.call('POST', '/deployments', { version: 'v3', path: JUDGED }), (e: unknown) => isCutoverError(e, 'CUTOVER_ERR_CONFLICT') && /rollback drill is in progress/.test((e as Error).message));
  assert.equal((await drill).outcome, 'passed');

  await h.client.call('POST', '/deployments', { version: 'v3', path: JUDGED, manual: true });
  const cur = h.daemon.controller.current()!;
  const r = await h.cli(['drill']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /deployment d-\S+ of v3 is in progress .*a rollback drill needs none/);
  await h.cli(['abort']);
  assert.equal((await cur.done).status, 'aborted');
});

test('a standby that was rolled back is never drilled onto', async () => {
  const bad = await h.deploy('v4-hostfail');
  assert.equal(bad.status, 'rolled-back');
  assert.equal(h.daemon.controller.status().standby!.version, 'v4-hostfail');
  const r = await h.cli(['drill']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the standby (blue|green) runs v4-hostfail, whose deployment d-\S+ was rolled back; a drill would send live traffic to it/);
});

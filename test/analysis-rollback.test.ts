/**
 * Post-switch analysis with real processes and live load through the router: a release that
 * passes its gates but fails under live traffic is rolled back on its own, with the reason and
 * the numbers in history; an identical release is never rolled back. Intervals are 1 s here
 * (minutes in production).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DeploymentRecord, EventRecord } from '../src/store/types.ts';
import { startHarness, JUDGED, type Harness } from './fixtures/judged/harness.ts';

const GATES = [
  'gates:',
  '  - name: version',
  '    http: { path: /version, expect: { json: { version: "{version}" } } }',
  'warmup: { requests: 50 }',
].join('\n');

function intervals(h: Harness, d: DeploymentRecord): EventRecord[] {
  return h.events(d.id).filter((e) => e.type === 'analysis');
}

/**
 * The latency limit of this judgement is built so that neither claim below depends on how busy
 * the machine is (issue 16: with the defaults, an identical release failed on a busy 2-core
 * machine, p95 27.6ms > limit 24ms in a 1 s interval). Contention adds about the same delay to
 * the baseline and to the candidate, so the limit is additive: baseline + 100 ms (relative 1),
 * halfway between "identical" (+0) and "200 ms slower" (+200), with ~100 ms of margin on each side
 * whatever the baseline; a relative factor would eat that margin as a busy baseline grows. p99 is
 * off: of ~80 requests an interval it is the slowest one, i.e. a single scheduler stall.
 */
const LATENCY = '  maxLatency: { p95: { relative: 1, slack: 100ms }, p99: false }';

describe('under live load', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness(`${GATES}\nanalysis:\n  window: 4s\n  interval: 1s\n  minRequests: 20\n  baseline: 3s\n  failureLimit: 1\n${LATENCY}\n`);
    assert.equal((await h.deploy('v1')).status, 'succeeded');
    h.liveLoad({ rate: 100, connections: 20 });
    await sleep(1_500); // the baseline: v1's live traffic before the next switch
  });
  after(async () => { await h?.close(); });

  test('a release with 20 % errors passes its gates, is rolled back within failureLimit intervals, and history says why with the values', async () => {
    const d = await h.deploy('v2-err20');
    assert.equal(d.gates, 'passed');
    assert.equal(d.status, 'rolled-back');
    const iv = intervals(h, d);
    assert.equal(iv.filter((e) => e.data?.outcome === 'failed').length, 1, 'rolled back at the first failed interval (failureLimit 1)');
    assert.ok(iv.length <= 2, `at most one inconclusive (partial) interval before it: ${iv.map((e) => e.reason).join(' | ')}`);
    assert.match(d.error!.message, /^analysis failed: error rate (1\d|2\d)(\.\d)?% > limit 1% \(baseline 0% × 2, absolute 1%\) in interval \d\/4 \(\d+ request\(s\); 1 of failureLimit 1\)$/);
    const check = (iv.at(-1)!.data!.checks as { check: string; value: number; limit: number; baseline: number }[])[0];
    assert.equal(check.check, 'error-rate');
    assert.ok(check.value > 0.1 && check.value < 0.3, `error rate ${check.value}`);
    assert.equal(check.limit, 0.01);

    assert.deepEqual(h.daemon.controller.status().live && { color: h.daemon.controller.status().live!.color, version: h.daemon.controller.status().live!.version }, { color: 'blue', version: 'v1' });
    const history = await h.cli(['history', '--json', '--limit', '1']);
    const rec = (JSON.parse(history.stdout) as { deployments: DeploymentRecord[] }).deployments[0];
    assert.equal(rec.status, 'rolled-back');
    assert.match(rec.error!.message, /error rate [\d.]+% > limit 1%/);
    const rollback = h.events(d.id).find((e) => e.type === 'rollback')!;
    assert.match(rollback.reason, /^automatic rollback: analysis failed: error rate [\d.]+% > limit 1% .*: live green \(v2-err20\) → blue \(v1\)$/);
  });

  test('a release slower by 200 ms is rolled back by the latency check', async () => {
    const d = await h.deploy('v3-slow200');
    assert.equal(d.status, 'rolled-back', d.error?.message);
    assert.match(d.error!.message, /^analysis failed: p95 [\d.]+ms > limit [\d.]+ms \(baseline [\d.]+ms × 1 \+ 100ms\)/);
    const p95 = Number(/p95 ([\d.]+)ms/.exec(d.error!.message)![1]);
    assert.ok(p95 >= 200, `the release's own 200 ms are in its p95 (${p95} ms)`);
    assert.equal(h.daemon.controller.status().live!.version, 'v1');
  });
});

/**
 * The A/A claim gets its own daemon with `failureLimit: 2`. One 1 s interval holds ~100 requests,
 * so a single scheduler stall on a busy 2-core machine (seen: p95 233 ms against a 10.8 ms
 * baseline while two test suites and a CPU hog ran) can fail one interval of an identical release.
 * A verdict that needs two failed intervals is what a user sets for a noisy service, and it is the
 * claim worth testing: noise alone never rolls an identical release back. The 20 %-errors and
 * 200 ms-slower releases above are still caught at the first failed interval (failureLimit 1).
 */
describe('an identical release under live load', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness(`${GATES}\nanalysis:\n  window: 4s\n  interval: 1s\n  minRequests: 20\n  baseline: 3s\n  failureLimit: 2\n${LATENCY}\n`);
    assert.equal((await h.deploy('v1')).status, 'succeeded');
    h.liveLoad({ rate: 100, connections: 20 });
    await sleep(1_500); // the baseline: v1's live traffic before the next switch
  });
  after(async () => { await h?.close(); });

  test('an identical release (A/A) is never rolled back: 0 false rollbacks in 3 runs', async () => {
    const results: string[] = [];
    for (const v of ['v4-aa', 'v5-aa', 'v6-aa']) {
      const d = await h.deploy(v);
      const iv = intervals(h, d);
      results.push(`${v}: ${d.status} ${d.error?.message ?? ''} [${iv.map((e) => e.data?.outcome).join(',')}]`);
      assert.equal(d.status, 'succeeded', results.join('\n'));
      assert.ok(iv.filter((e) => e.data?.outcome === 'passed').length >= 2, `the verdict had data: ${results.at(-1)}`);
    }
  });
});

describe('low traffic with synthetic requests', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness(`${GATES}\nanalysis:\n  window: 4s\n  interval: 1s\n  minRequests: 20\n  synthetic: { rate: 60, paths: [/] }\n`);
    assert.equal((await h.deploy('v1')).status, 'succeeded');
  });
  after(async () => { await h?.close(); });

  test('with no live traffic, synthetic requests through live (and a copy to the old colour as the baseline) give a verdict', async () => {
    const slow = await h.deploy('v2-slow200');
    assert.equal(slow.status, 'rolled-back');
    const started = h.events(slow.id).find((e) => e.type === 'analysis.started')!;
    assert.equal((started.data!.baseline as { source: string }).source, 'synthetic');
    assert.match(slow.error!.message, /p95 2\d\dms > limit/);
    const fine = await h.deploy('v3');
    assert.equal(fine.status, 'succeeded', fine.error?.message);
    assert.ok(intervals(h, fine).some((e) => e.data?.outcome === 'passed'));
    assert.ok(h.requestLog('v3').length > 50, 'synthetic requests reached the new live colour');
  });
});

describe('inconclusive: pause', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness('analysis:\n  window: 10s\n  interval: 1s\n  minRequests: 100000\n  inconclusive: pause\n');
    assert.equal((await h.deploy('v1')).status, 'succeeded');
  });
  after(async () => { await h?.close(); });

  async function paused(version: string) {
    await h.client.call('POST', '/deployments', { version, path: JUDGED });
    const cur = h.daemon.controller.current()!;
    for (let i = 0; i < 200 && h.daemon.controller.current()?.deployment.status !== 'awaiting-promotion'; i++) await sleep(25);
    assert.equal(h.daemon.controller.current()?.deployment.status, 'awaiting-promotion');
    assert.equal(h.daemon.controller.current()?.deployment.phase, 'analysis');
    return cur;
  }

  test('judging stops at the first inconclusive interval and waits: promote accepts the release, rollback rolls it back', async () => {
    const first = await paused('v2');
    const wait = h.events(first.deployment.id).find((e) => e.type === 'promote.waiting')!;
    assert.match(wait.reason, /interval 1\/10 of v2 was inconclusive \(\d+ request\(s\) < minRequests 100000\); judging stopped: `cutover promote` accepts it, `cutover rollback` rolls back/);
    const p = await h.cli(['promote']);
    assert.equal(p.code, 0, p.stderr);
    const ok = await first.done;
    assert.equal(ok.status, 'succeeded');
    assert.match(h.events(ok.id).find((e) => e.type === 'phase' && e.phase === 'analysis')!.reason, /^accepted by \S+ after analysis paused$/);

    const second = await paused('v3');
    const rb = await h.cli(['rollback']);
    assert.equal(rb.code, 0, rb.stderr);
    const back = await second.done;
    assert.notEqual(back.status, 'succeeded');
    assert.equal(h.daemon.controller.status().live!.version, 'v2');
  });
});

/**
 * The decision rules of post-switch analysis on plain numbers (judgeInterval), and the interval
 * loop (runAnalysis) on a scripted request history: failure limits, the inconclusive policy,
 * pausing for an operator, and what each event says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analysisSchema, type AnalysisConfig } from '../config/analysis.ts';
import { judgeInterval } from './judge.ts';
import { runAnalysis, type AnalysisInput } from './analyzer.ts';
import type { StatsSummary } from '../router/request-stats.ts';

const cfg = (o: object = {}): AnalysisConfig => analysisSchema.parse({ window: '5s', interval: '1s', minRequests: 50, ...o });

function summary(o: Partial<StatsSummary> & { requests: number; latencyRequests?: number }): StatsSummary & { latencyRequests?: number } {
  return {
    byClass: { '2xx': o.requests, '3xx': 0, '4xx': 0, '5xx': 0 }, errors: { connect: 0, timeout: 0, reset: 0, 'no-healthy': 0 },
    errorRate: 0, p50: 5, p95: 10, p99: 20, samples: [], ...o,
  };
}

test('an interval with fewer than minRequests requests is inconclusive', () => {
  const j = judgeInterval(summary({ requests: 49 }), summary({ requests: 1000 }), cfg());
  assert.equal(j.outcome, 'inconclusive');
  assert.equal(j.text, '49 request(s) < minRequests 50');
});

test('error rate fails when candidate > max(baseline × relative, absolute)', () => {
  const c = cfg({ maxErrorRate: { relative: 2, absolute: '1%' } });
  const base0 = summary({ requests: 1000, errorRate: 0 });
  const base5 = summary({ requests: 1000, errorRate: 0.05 });
  const at = (rate: number, base: StatsSummary) => judgeInterval(summary({ requests: 100, errorRate: rate }), base, c).checks[0];
  assert.equal(at(0, base0).outcome, 'passed', '0 vs 0 passes');
  assert.equal(at(0.01, base0).outcome, 'passed', 'exactly the absolute floor passes');
  const f = at(0.2, base0);
  assert.equal(f.outcome, 'failed');
  assert.equal(f.limit, 0.01);
  assert.equal(f.text, 'error rate 20% > limit 1% (baseline 0% × 2, absolute 1%)');
  assert.equal(at(0.1, base5).outcome, 'passed', 'a noisy baseline raises the limit: 5% × 2 = 10%');
  assert.equal(at(0.11, base5).outcome, 'failed');
});

test('p95/p99 fail when candidate > baseline × relative + slack; either can be turned off', () => {
  const c = cfg({ maxLatency: { p95: { relative: 1.5, slack: '20ms' }, p99: false } });
  const base = summary({ requests: 1000, p95: 10, p99: 30 });
  const ok = judgeInterval(summary({ requests: 100, p95: 35, p99: 500 }), base, c);
  assert.deepEqual(ok.checks.map((k) => [k.check, k.outcome, k.limit]), [['error-rate', 'passed', 0.01], ['p95', 'passed', 35]]);
  const slow = judgeInterval(summary({ requests: 100, p95: 210 }), base, c);
  assert.equal(slow.outcome, 'failed');
  assert.equal(slow.checks[1].text, 'p95 210ms > limit 35ms (baseline 10ms × 1.5 + 20ms)');
});

test('latency is not judged on the settle time after the switch; errors are', () => {
  const j = judgeInterval(summary({ requests: 100, latencyRequests: 30, errorRate: 0.2, p95: 900 }), summary({ requests: 1000 }), cfg());
  assert.equal(j.outcome, 'failed');
  assert.deepEqual(j.checks.map((k) => [k.check, k.outcome]), [['error-rate', 'failed'], ['p95', 'skipped']]);
  assert.equal(j.checks[1].text, 'latency not judged: 30 request(s) after the settle time < minRequests 50');
});

test('without a usable baseline: error rate against the absolute limit only, latency not judged', () => {
  const j = judgeInterval(summary({ requests: 100, errorRate: 0.005, p95: 900 }), summary({ requests: 10 }), cfg());
  assert.equal(j.outcome, 'passed');
  assert.deepEqual(j.checks.map((k) => [k.check, k.outcome]), [['error-rate', 'passed'], ['p95', 'skipped'], ['p99', 'skipped']]);
  assert.equal(j.checks[0].text, 'error rate 0.5% ≤ limit 1% (no baseline: absolute 1%)');
  assert.equal(judgeInterval(summary({ requests: 100, errorRate: 0.02 }), null, cfg()).outcome, 'failed');
});

test('mann-whitney: a 200 ms shift fails; the same distribution passes; a significant but tiny shift passes', () => {
  const c = cfg({ latencyTest: 'mann-whitney' });
  assert.deepEqual(c.latencyTest, { method: 'mann-whitney', significance: 0.01, minEffect: 1.2, slack: 5 });
  // Deterministic "noisy" latencies around 5 ms.
  const noise = (n: number, seed: number, shift = 0) => Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + seed * 104729) % 97) / 24 + shift);
  const base = summary({ requests: 2000, samples: noise(2000, 1) });
  const slow = judgeInterval(summary({ requests: 200, samples: noise(200, 2, 200) }), base, c);
  assert.equal(slow.outcome, 'failed');
  const mw = slow.checks.find((k) => k.check === 'latency-mann-whitney')!;
  assert.equal(mw.outcome, 'failed');
  assert.match(mw.text, /^latency \(Mann-Whitney, 200 vs 2000 samples\) slower: p .* < 0\.01 and median 20\dms > [\d.]+ms/);
  assert.ok(mw.detail!.effect > 0.99);
  assert.ok(!slow.checks.some((k) => k.check === 'p95'), 'the test replaces the percentile checks');

  const same = judgeInterval(summary({ requests: 200, samples: noise(200, 3) }), base, c);
  assert.equal(same.outcome, 'passed', same.text);

  const tiny = judgeInterval(summary({ requests: 2000, samples: noise(2000, 4, 0.5) }), base, c);
  const t = tiny.checks.find((k) => k.check === 'latency-mann-whitney')!;
  assert.equal(t.outcome, 'passed');
  assert.match(t.text, /p .* < 0\.01 but median [\d.]+ms ≤ [\d.]+ms \(effect too small\)/);
});

test('config: interval at least 1s and at most the window; defaults; latencyTest object form', () => {
  assert.throws(() => analysisSchema.parse({ interval: '500ms' }), /at least 1s/);
  assert.throws(() => analysisSchema.parse({ window: '10s', interval: '20s' }), /at most the window/);
  const d = analysisSchema.parse({});
  assert.deepEqual({ ...d, latencyTest: d.latencyTest.method }, {
    window: 120_000, interval: 10_000, minRequests: 50, baseline: 120_000, settle: 1_000,
    maxErrorRate: { relative: 2, absolute: 0.01 }, maxLatency: { p95: { relative: 1.5, slack: 20 }, p99: { relative: 2, slack: 50 } },
    latencyTest: 'percentiles', failureLimit: 1, inconclusive: 'continue', onFailure: 'rollback',
  });
  assert.equal(analysisSchema.parse({ window: '30m' }).baseline, 300_000, 'the baseline defaults to the window, at most 5m');
  assert.deepEqual(analysisSchema.parse({ latencyTest: { method: 'mann-whitney', significance: 0.05, minEffect: 1.5 } }).latencyTest, { method: 'mann-whitney', significance: 0.05, minEffect: 1.5, slack: 5 });
});

/** runAnalysis on a script: `intervals[k]` is what the candidate's live lane holds in interval k. */
function scripted(c: AnalysisConfig, intervals: Partial<StatsSummary>[], o: { baseline?: Partial<StatsSummary>; promote?: () => Promise<{ actor: string; force: boolean }> } = {}) {
  const switchAt = 1_000_000_500;
  const events: { type: string; reason: string; data: Record<string, unknown> }[] = [];
  const waits: string[] = [];
  const input: AnalysisInput = {
    cfg: c, candidate: { color: 'green', version: 'v2' }, previous: { color: 'blue', version: 'v1' }, switchAt,
    stats: { query: () => summary({ requests: 1000, ...o.baseline }) },
    candidateWindow: (from) => summary({ requests: 100, ...intervals[Math.round((from - switchAt) / c.interval)] }),
    previousPreviewWindow: () => summary({ requests: 0 }),
    liveUrl: 'http://127.0.0.1:1', previewUrl: null, signal: new AbortController().signal,
    record: (e) => events.push(e),
    awaitPromotion: (reason) => { waits.push(reason); return o.promote ? o.promote() : Promise.reject(new Error('no operator')); },
    now: () => Number.MAX_SAFE_INTEGER, // every interval is already over: judge without sleeping
  };
  return { run: () => runAnalysis(input), events, waits };
}

test('failureLimit failed intervals conclude `failed` with the check, values and thresholds', async () => {
  const s = scripted(cfg({ failureLimit: 2 }), [{ errorRate: 0.2 }, {}, { errorRate: 0.3 }, {}, {}]);
  const v = await s.run();
  assert.equal(v.outcome, 'failed');
  assert.equal(v.summary, 'error rate 30% > limit 1% (baseline 0% × 2, absolute 1%) in interval 3/5 (100 request(s); 2 of failureLimit 2)');
  assert.deepEqual(s.events.map((e) => [e.type, e.data.outcome ?? null, e.data.failures ?? null]), [
    ['analysis.started', null, null], ['analysis', 'failed', 1], ['analysis', 'passed', 0 + 1], ['analysis', 'failed', 2],
  ]);
  assert.match(s.events[1].reason, /^interval 1\/5 failed \(1\/2\): error rate 20% > limit 1% .*; p95 10ms ≤ limit 35ms .*; p99 20ms ≤ limit 90ms .* \[100 request\(s\)\]$/);
});

test('an A/A bake passes; inconclusive intervals follow the policy (continue | rollback | pause)', async () => {
  const aa = await scripted(cfg(), [{}, {}, {}, {}, {}]).run();
  assert.equal(aa.outcome, 'passed');
  assert.equal(aa.summary, 'stable for 5s: 5 interval(s) passed, 0 inconclusive, 0 failed (limit 1)');

  const quiet = [{ requests: 3 }, { requests: 3 }, {}, {}, {}];
  assert.equal((await scripted(cfg({ inconclusive: 'continue' }), quiet).run()).summary, 'stable for 5s: 3 interval(s) passed, 2 inconclusive, 0 failed (limit 1)');
  const rb = await scripted(cfg({ inconclusive: 'rollback' }), quiet).run();
  assert.equal(rb.outcome, 'failed');
  assert.match(rb.summary, /^3 request\(s\) < minRequests 50 \(inconclusive: rollback\) in interval 1\/5/);

  const p = scripted(cfg({ inconclusive: 'pause' }), quiet, { promote: async () => ({ actor: 'alice', force: false }) });
  const paused = await p.run();
  assert.equal(paused.outcome, 'passed');
  assert.equal(paused.summary, 'accepted by alice after analysis paused');
  assert.match(p.waits[0], /interval 1\/5 of v2 was inconclusive .*`cutover promote` accepts it, `cutover rollback` rolls back/);
  assert.ok(p.events.some((e) => e.type === 'analysis.paused'));
});

test('onFailure: pause holds for an operator instead of rolling back; a rollback then rejects the wait', async () => {
  const s = scripted(cfg({ onFailure: 'pause' }), [{ p95: 400 }]);
  await assert.rejects(s.run(), /no operator/);
  assert.match(s.waits[0], /^analysis of v2 failed: p95 400ms > limit 35ms/);
});

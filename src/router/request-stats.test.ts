import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RequestStats, STATS_RETENTION_MS, STATS_SAMPLES_PER_BUCKET } from './request-stats.ts';

function clock(start = 1_700_000_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

test('counts by status class, errors by kind and error rate per listener and colour', () => {
  const c = clock();
  const s = new RequestStats({ now: c.now });
  s.record('live', 'blue', 200, 5);
  s.record('live', 'blue', 204, 5);
  s.record('live', 'blue', 301, 5);
  s.record('live', 'blue', 404, 5);
  s.record('live', 'blue', 502, 5, 'connect');
  s.record('live', 'blue', 503, 5, 'no-healthy');
  s.record('live', 'green', 200, 5);
  s.record('preview', 'blue', 500, 5);
  const q = s.query('live', 'blue', c.t - 1_000, c.t + 1_000);
  assert.equal(q.requests, 6);
  assert.deepEqual(q.byClass, { '2xx': 2, '3xx': 1, '4xx': 1, '5xx': 2 });
  assert.deepEqual(q.errors, { connect: 1, timeout: 0, reset: 0, 'no-healthy': 1 });
  assert.equal(q.errorRate, 2 / 6);
  assert.equal(s.query('live', 'green', c.t - 1_000, c.t + 1_000).requests, 1);
  assert.equal(s.query('preview', 'blue', c.t - 1_000, c.t + 1_000).errorRate, 1);
  assert.equal(s.query('preview', 'green', c.t - 1_000, c.t + 1_000).requests, 0);
});

test('percentiles are exact while every request is sampled, and close from the histogram beyond', () => {
  const c = clock();
  const s = new RequestStats({ now: c.now });
  for (let i = 1; i <= 100; i++) s.record('live', 'blue', 200, i);
  let q = s.query('live', 'blue', c.t, c.t + 1);
  assert.equal(q.p50, 50);
  assert.equal(q.p95, 95);
  assert.equal(q.p99, 99);
  assert.equal(q.samples.length, 100);
  // 10 000 requests in one second: reservoir keeps 200, percentiles come from the histogram.
  const s2 = new RequestStats({ now: c.now });
  for (let i = 1; i <= 10_000; i++) s2.record('live', 'blue', 200, i / 10); // 0.1 .. 1000 ms uniform
  q = s2.query('live', 'blue', c.t, c.t + 1);
  assert.equal(q.samples.length, STATS_SAMPLES_PER_BUCKET);
  assert.ok(Math.abs(q.p50 - 500) / 500 < 0.07, `p50 ${q.p50}`);
  assert.ok(Math.abs(q.p99 - 990) / 990 < 0.07, `p99 ${q.p99}`);
  // The reservoir is a uniform sample: its mean is near the true mean (500 ms).
  const mean = q.samples.reduce((a, b) => a + b, 0) / q.samples.length;
  assert.ok(mean > 400 && mean < 600, `sample mean ${mean}`);
});

test('empty ranges give NaN percentiles and zero error rate', () => {
  const c = clock();
  const q = new RequestStats({ now: c.now }).query('live', 'blue', c.t - 10_000, c.t);
  assert.equal(q.requests, 0);
  assert.equal(q.errorRate, 0);
  assert.ok(Number.isNaN(q.p50));
});

test('buckets are 1 s wide, ranges select them, and data older than 15 minutes is gone', () => {
  const c = clock();
  const s = new RequestStats({ now: c.now });
  const t0 = c.t;
  s.record('live', 'blue', 200, 1);
  c.t += 1_000;
  s.record('live', 'blue', 200, 1);
  s.record('live', 'blue', 500, 1);
  c.t += 1_000;
  assert.equal(s.query('live', 'blue', t0, t0 + 1_000).requests, 1);
  assert.equal(s.query('live', 'blue', t0 + 1_000, t0 + 2_000).requests, 2);
  assert.equal(s.query('live', 'blue', t0, t0 + 2_000).requests, 3);
  const series = s.series('live', 'blue', t0, t0 + 3_000, 1_000);
  assert.deepEqual(series.map((p) => p.requests), [1, 2, 0]);
  assert.deepEqual(series.map((p) => p.byClass['5xx']), [0, 1, 0]);
  // Ring reuse: 15 minutes later the same slots hold new seconds, and the old ones read as empty.
  c.t = t0 + STATS_RETENTION_MS;
  assert.equal(s.query('live', 'blue', t0, t0 + 2_000).requests, 2, 'the second at t0+1s is exactly 15 minutes old: kept');
  c.t += 1_000;
  s.record('live', 'blue', 200, 1);
  assert.equal(s.query('live', 'blue', t0, t0 + 2_000).requests, 0);
  assert.equal(s.query('live', 'blue', c.t, c.t + 1_000).requests, 1);
});

test('counts from counters and sampled latencies: exact counts, percentiles weighted by what each sample stands for', () => {
  const c = clock();
  const s = new RequestStats({ now: c.now });
  // Second 1: 1,000 requests, latencies sampled 1 in 100 (10 samples at 10 ms).
  s.recordCounts('live', 'blue', [990, 0, 5, 5]);
  for (let i = 0; i < 10; i++) s.recordLatency('live', 'blue', 10, undefined, 100);
  s.recordLatency('live', 'blue', 3, 'connect');
  // Second 2: 20 requests, every one timed, at 500 ms: they must not outweigh second 1's 1,000.
  c.t += 1_000;
  s.recordCounts('live', 'blue', [20, 0, 0, 0]);
  for (let i = 0; i < 20; i++) s.recordLatency('live', 'blue', 500);
  const q = s.query('live', 'blue', c.t - 1_000, c.t + 1_000);
  assert.equal(q.requests, 1_020);
  assert.deepEqual(q.byClass, { '2xx': 1_010, '3xx': 0, '4xx': 5, '5xx': 5 });
  assert.equal(q.errors.connect, 1);
  assert.ok(Math.abs(q.p95 - 10) / 10 < 0.07, `p95 ${q.p95}: the 1,000 requests of second 1 dominate`);
  assert.ok(Math.abs(q.p99 - 500) / 500 < 0.07, `p99 ${q.p99}: the 2 % at 500 ms`);
  assert.equal(q.samples.length, 31);
  // Every request timed (weight 1, as with the builtin router): exact percentiles from the samples.
  const only2 = s.query('live', 'blue', c.t, c.t + 1_000);
  assert.equal(only2.p50, 500);
  // Counts with no latency at all: requests known, percentiles unknown.
  c.t += 1_000;
  s.recordCounts('preview', 'green', [3, 0, 0, 0]);
  const p = s.query('preview', 'green', c.t, c.t + 1_000);
  assert.equal(p.requests, 3);
  assert.ok(Number.isNaN(p.p95));
});

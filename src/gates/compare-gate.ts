/**
 * `compare` gate: the same requests to live and to preview, interleaved (so drift on the machine
 * hits both alike), then preview's error rate and p95 are held to live's:
 *   error rate: preview ≤ max(live × maxErrorRateRatio, errorRateFloor)
 *   p95:        preview ≤ live × maxP95Ratio + p95Slack
 * The floor and the slack keep 0-vs-0 and tiny baselines from dividing by zero or failing on noise.
 */
import { performance } from 'node:perf_hooks';
import { loadUndici } from '../lib/lazy-undici.ts';
import type { CompareGateSpec } from '../config/gates.ts';
import { ms, pct, quantile, substitute, type GateResult, type GateTarget } from './types.ts';

export const COMPARE_REQUEST_TIMEOUT_MS = 10_000;

interface Side { latencies: number[]; errors: number; requests: number }

export async function runCompareGate(name: string, spec: CompareGateSpec, target: GateTarget): Promise<GateResult> {
  const thresholds = { maxErrorRateRatio: spec.maxErrorRateRatio, errorRateFloor: spec.errorRateFloor, maxP95Ratio: spec.maxP95Ratio, p95SlackMs: spec.p95Slack };
  if (!target.hasLive || target.liveUrl === null) {
    return { gate: name, kind: 'compare', outcome: 'skipped', reason: `${name}: nothing is live to compare with (first release)`, values: {}, thresholds, durationMs: 0 };
  }
  const { Agent, request } = await loadUndici();
  const t0 = performance.now();
  const headers = Object.fromEntries(Object.entries(spec.headers).map(([k, v]) => [k.toLowerCase(), substitute(v, target)]));
  const agent = new Agent({ connections: spec.concurrency, keepAliveTimeout: 2_000 });
  const live: Side = { latencies: [], errors: 0, requests: 0 };
  const preview: Side = { latencies: [], errors: 0, requests: 0 };
  const one = async (base: string, path: string, side: Side) => {
    const s = performance.now();
    let ok = false;
    try {
      const res = await request(`${base}${path}`, { dispatcher: agent, headers, signal: target.signal, headersTimeout: COMPARE_REQUEST_TIMEOUT_MS, bodyTimeout: COMPARE_REQUEST_TIMEOUT_MS });
      await res.body.dump({ limit: 1 << 22 });
      ok = res.statusCode < 500;
    } catch (err) {
      if (target.signal.aborted) throw err;
    }
    side.requests++;
    if (ok) side.latencies.push(performance.now() - s);
    else side.errors++;
  };
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < spec.requests; i = next++) {
      const path = substitute(spec.paths[i % spec.paths.length], target);
      // Alternate which side goes first so neither always meets a warmer connection.
      if (i % 2 === 0) { await one(target.liveUrl!, path, live); await one(target.url, path, preview); }
      else { await one(target.url, path, preview); await one(target.liveUrl!, path, live); }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.requests) }, worker));
  } finally {
    await agent.close();
  }
  const stats = (s: Side) => {
    const sorted = Float64Array.from(s.latencies).sort();
    return { requests: s.requests, errors: s.errors, errorRate: s.requests === 0 ? 0 : s.errors / s.requests, p50Ms: quantile(sorted, 0.5), p95Ms: quantile(sorted, 0.95) };
  };
  const L = stats(live);
  const P = stats(preview);
  const errLimit = Math.max(L.errorRate * spec.maxErrorRateRatio, spec.errorRateFloor);
  // No successful live answer: nothing to scale; judge preview's latency against the slack alone.
  const p95Limit = (Number.isFinite(L.p95Ms) ? L.p95Ms : 0) * spec.maxP95Ratio + spec.p95Slack;
  const values = { live: L, preview: P, errorRateLimit: errLimit, p95LimitMs: p95Limit };
  const durationMs = performance.now() - t0;
  const errPart = `error rate ${pct(P.errorRate)} vs live ${pct(L.errorRate)} (limit ${pct(errLimit)})`;
  const p95Part = `p95 ${ms(P.p95Ms)} vs live ${ms(L.p95Ms)} (limit ${ms(p95Limit)})`;
  const problems: string[] = [];
  if (P.errorRate > errLimit) problems.push(errPart);
  if (P.errors < P.requests && P.p95Ms > p95Limit) problems.push(p95Part);
  const head = `${name}: ${spec.requests} request(s) each to live and preview over ${spec.paths.join(', ')}`;
  if (problems.length > 0) return { gate: name, kind: 'compare', outcome: 'failed', reason: `${head}: ${problems.join('; ')}`, values, thresholds, durationMs };
  return { gate: name, kind: 'compare', outcome: 'passed', reason: `${head}: ${errPart}; ${p95Part}`, values, thresholds, durationMs };
}

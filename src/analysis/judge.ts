/**
 * The decision rules of post-switch analysis, as one pure function over two request summaries
 * (the new live colour's interval, the old colour's baseline). No clocks, no I/O: the analyzer
 * feeds it, the tests feed it numbers.
 *
 *   interval with fewer than minRequests candidate requests   → inconclusive
 *   error rate (5xx share)  fails when candidate > max(baseline × relative, absolute)
 *   p95 / p99               fail when  candidate > baseline × relative + slack
 *   mann-whitney (option)   fails when p(candidate slower) < significance
 *                                 and  candidate median > baseline median × minEffect + slack
 *   without a usable baseline (< minRequests requests): error rate is held to `absolute` alone
 *   and the latency checks are skipped; so are they when fewer than minRequests requests
 *   finished after the settle time (the first moments after the switch).
 * An interval fails when any check fails; passes when none fails.
 */
import type { StatsSummary } from '../router/request-stats.ts';
import type { AnalysisConfig, LatencyLimit } from '../config/analysis.ts';
import { mannWhitneyU, median } from './mann-whitney.ts';

/** Baseline samples used by the U test at most (uniformly thinned beyond that; the test stays ~ms). */
export const MAX_TEST_SAMPLES = 10_000;

export type CheckName = 'error-rate' | 'p95' | 'p99' | 'latency-mann-whitney';
export type CheckOutcome = 'passed' | 'failed' | 'skipped';

export interface CheckResult {
  check: CheckName;
  outcome: CheckOutcome;
  /** The candidate's value (a share for error-rate, ms for latency; the p-value for mann-whitney). */
  value: number;
  baseline: number | null;
  limit: number | null;
  /** One phrase with the numbers, e.g. `error rate 20.1% > limit 1% (baseline 0% × 2, absolute 1%)`. */
  text: string;
  detail?: Record<string, number>;
}

export interface IntervalJudgement {
  outcome: 'passed' | 'failed' | 'inconclusive';
  requests: number;
  checks: CheckResult[];
  /** The candidate's summary numbers (informational). */
  candidate: { requests: number; errorRate: number; p50: number; p95: number; p99: number };
  text: string;
}

type Summary = Pick<StatsSummary, 'requests' | 'errorRate' | 'p50' | 'p95' | 'p99' | 'samples'> & { latencyRequests?: number };

export function judgeInterval(candidate: Summary, baseline: Summary | null, cfg: AnalysisConfig): IntervalJudgement {
  const c = { requests: candidate.requests, errorRate: candidate.errorRate, p50: candidate.p50, p95: candidate.p95, p99: candidate.p99 };
  if (candidate.requests < cfg.minRequests) {
    return { outcome: 'inconclusive', requests: candidate.requests, checks: [], candidate: c, text: `${candidate.requests} request(s) < minRequests ${cfg.minRequests}` };
  }
  const base = baseline !== null && baseline.requests >= cfg.minRequests ? baseline : null;
  const checks: CheckResult[] = [errorRateCheck(candidate, base, cfg)];
  const latencyCount = candidate.latencyRequests ?? candidate.requests;
  if (latencyCount < cfg.minRequests) {
    // Mostly inside the settle time after the switch: too few settled requests to judge latency on.
    checks.push({ check: cfg.latencyTest.method === 'mann-whitney' ? 'latency-mann-whitney' : 'p95', outcome: 'skipped', value: Number.NaN, baseline: null, limit: null, text: `latency not judged: ${latencyCount} request(s) after the settle time < minRequests ${cfg.minRequests}` });
  } else if (cfg.latencyTest.method === 'mann-whitney') checks.push(mannWhitneyCheck(candidate, base, cfg.latencyTest));
  else {
    if (cfg.maxLatency.p95 !== false) checks.push(percentileCheck('p95', candidate.p95, base?.p95 ?? null, cfg.maxLatency.p95));
    if (cfg.maxLatency.p99 !== false) checks.push(percentileCheck('p99', candidate.p99, base?.p99 ?? null, cfg.maxLatency.p99));
  }
  const failed = checks.filter((k) => k.outcome === 'failed');
  return {
    outcome: failed.length > 0 ? 'failed' : 'passed',
    requests: candidate.requests,
    checks,
    candidate: c,
    text: checks.map((k) => k.text).join('; '),
  };
}

function errorRateCheck(c: Summary, b: Summary | null, cfg: AnalysisConfig): CheckResult {
  const { relative, absolute } = cfg.maxErrorRate;
  const limit = b ? Math.max(b.errorRate * relative, absolute) : absolute;
  const how = b ? `baseline ${pct(b.errorRate)} × ${relative}, absolute ${pct(absolute)}` : `no baseline: absolute ${pct(absolute)}`;
  const failed = c.errorRate > limit;
  return {
    check: 'error-rate', outcome: failed ? 'failed' : 'passed', value: c.errorRate, baseline: b?.errorRate ?? null, limit,
    text: `error rate ${pct(c.errorRate)} ${failed ? '>' : '≤'} limit ${pct(limit)} (${how})`,
  };
}

function percentileCheck(name: 'p95' | 'p99', value: number, baseline: number | null, l: LatencyLimit): CheckResult {
  if (baseline === null || !Number.isFinite(baseline)) {
    return { check: name, outcome: 'skipped', value, baseline: null, limit: null, text: `${name} ${ms(value)} (not judged: no baseline)` };
  }
  const limit = baseline * l.relative + l.slack;
  const failed = value > limit;
  return {
    check: name, outcome: failed ? 'failed' : 'passed', value, baseline, limit,
    text: `${name} ${ms(value)} ${failed ? '>' : '≤'} limit ${ms(limit)} (baseline ${ms(baseline)} × ${l.relative} + ${ms(l.slack)})`,
  };
}

function mannWhitneyCheck(c: Summary, b: Summary | null, t: { significance: number; minEffect: number; slack: number }): CheckResult {
  if (b === null || b.samples.length === 0 || c.samples.length === 0) {
    return { check: 'latency-mann-whitney', outcome: 'skipped', value: Number.NaN, baseline: null, limit: null, text: 'latency (Mann-Whitney) not judged: no baseline' };
  }
  const bs = thin(b.samples, MAX_TEST_SAMPLES);
  const cs = thin(c.samples, MAX_TEST_SAMPLES);
  const r = mannWhitneyU(cs, bs, 'greater');
  const mc = median(cs);
  const mb = median(bs);
  const shiftLimit = mb * t.minEffect + t.slack;
  const significant = r.p < t.significance;
  const large = mc > shiftLimit;
  const failed = significant && large;
  const verdict = failed
    ? `slower: p ${fmtP(r.p)} < ${t.significance} and median ${ms(mc)} > ${ms(shiftLimit)}`
    : significant ? `p ${fmtP(r.p)} < ${t.significance} but median ${ms(mc)} ≤ ${ms(shiftLimit)} (effect too small)`
    : `no significant slowdown: p ${fmtP(r.p)} ≥ ${t.significance}, median ${ms(mc)}`;
  return {
    check: 'latency-mann-whitney', outcome: failed ? 'failed' : 'passed', value: r.p, baseline: mb, limit: t.significance,
    text: `latency (Mann-Whitney, ${cs.length} vs ${bs.length} samples) ${verdict} (baseline median ${ms(mb)} × ${t.minEffect} + ${ms(t.slack)}; A12 ${r.effect.toFixed(2)})`,
    detail: { u: r.u, z: r.z, p: r.p, effect: r.effect, candidateMedian: mc, baselineMedian: mb, medianLimit: shiftLimit, n1: r.n1, n2: r.n2 },
  };
}

/** Every k-th value so that at most `max` remain (the router's samples are already a uniform reservoir). */
function thin(values: number[], max: number): number[] {
  if (values.length <= max) return values;
  const step = values.length / max;
  const out: number[] = [];
  for (let i = 0; i < max; i++) out.push(values[Math.floor(i * step)]);
  return out;
}

export function pct(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return `${Number((v * 100).toFixed(v !== 0 && v < 0.01 ? 2 : 1))}%`;
}

export function ms(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v >= 100 ? `${Math.round(v)}ms` : `${Number(v.toFixed(1))}ms`;
}

function fmtP(p: number): string {
  return p < 0.0001 ? p.toExponential(1) : p.toFixed(4);
}

/**
 * The bake: after the switch, cut time into intervals aligned to the router's 1 s buckets, judge
 * each interval of the new live colour against the old colour's baseline, record the verdict with
 * its numbers, and conclude. It only returns a verdict (or waits for an operator): the controller
 * rolls back when it says `failed`.
 *
 * Baseline: the old colour's live-listener requests in the `baseline` span before the switch
 * (the router's per-colour stats). When that has fewer than minRequests requests and synthetic
 * traffic is on, the old release's preview-listener requests of the same interval (the synthetic
 * copy sent to it) are used instead. Intervals start at the switch, to the millisecond, and count
 * only the new release's requests (ReleaseRecorder).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Color } from '../environments/types.ts';
import type { StatsSummary } from '../router/request-stats.ts';
import { formatDuration } from '../lib/duration.ts';
import { startLoad, type LoadRun } from '../gates/load-generator.ts';
import type { AnalysisConfig } from '../config/analysis.ts';
import { judgeInterval, ms, pct, type IntervalJudgement } from './judge.ts';
import type { WindowSummary } from './recorder.ts';
import { describeAuth, type AuthFigures } from './auth-counter.ts';

/** After an interval ends, wait this long before reading it (requests are counted when they finish). */
export const EVAL_GRACE_MS = 10;
export const SYNTHETIC_HEADER = 'x-cutover-synthetic';

export interface AnalysisInput {
  cfg: AnalysisConfig;
  candidate: { color: Color; version: string };
  previous: { color: Color; version: string };
  /** When the switch took effect (epoch ms). */
  switchAt: number;
  /** The router's stats: the baseline before the switch. */
  stats: { query(listener: 'live', color: Color, fromMs: number, toMs: number): StatsSummary };
  /** The new release's live requests that finished in [from, to) (taken in order). */
  candidateWindow(from: number, to: number, latencyFrom: number): WindowSummary;
  /** The old release's preview requests in [from, to): the synthetic copy, a concurrent baseline. */
  previousPreviewWindow(from: number, to: number, latencyFrom: number): WindowSummary;
  liveUrl: string;
  previewUrl: string | null;
  signal: AbortSignal;
  record(e: { type: string; reason: string; data: Record<string, unknown> }): void;
  /** Hold for an operator: resolves on promote, rejects on rollback/abort. */
  awaitPromotion(reason: string): Promise<{ actor: string; force: boolean }>;
  /** Per-colour auth failures on the live listener since the last call (shown, not judged). */
  auth?: () => Record<Color, AuthFigures>;
  now?: () => number;
}

export interface AnalysisVerdict {
  outcome: 'passed' | 'failed';
  summary: string;
  data: Record<string, unknown>;
}

export async function runAnalysis(a: AnalysisInput): Promise<AnalysisVerdict> {
  const { cfg } = a;
  const now = a.now ?? Date.now;
  const t0 = a.switchAt;
  const count = Math.max(1, Math.round(cfg.window / cfg.interval));
  const before = a.stats.query('live', a.previous.color, a.switchAt - cfg.baseline, a.switchAt);
  const baselineOk = before.requests >= cfg.minRequests;
  const synthetic = cfg.synthetic ? startSynthetic(a, count * cfg.interval + 2_000, !baselineOk) : null;
  const baselineSource = baselineOk ? 'before-switch' : synthetic?.preview ? 'synthetic' : 'none';
  const baselineInfo = { source: baselineSource, spanMs: cfg.baseline, requests: before.requests, errorRate: before.errorRate, p95: before.p95, p99: before.p99 };
  a.record({
    type: 'analysis.started',
    reason: `analysis: ${count} interval(s) of ${formatDuration(cfg.interval)}; baseline ${a.previous.color} (${a.previous.version}) over ${formatDuration(cfg.baseline)} before the switch: ${before.requests} request(s), error rate ${pct(before.errorRate)}, p95 ${ms(before.p95)}, p99 ${ms(before.p99)}${baselineOk ? '' : synthetic?.preview ? ` (< minRequests ${cfg.minRequests}: the synthetic copy to ${a.previous.color} is the baseline)` : ` (< minRequests ${cfg.minRequests}: error rate held to the absolute limit, latency not judged)`}${cfg.synthetic ? `; synthetic ${cfg.synthetic.rate} req/s` : ''}`,
    data: { baseline: baselineInfo, intervals: count, intervalMs: cfg.interval, windowMs: count * cfg.interval, synthetic: cfg.synthetic ?? null },
  });
  let failures = 0;
  let passed = 0;
  let inconclusive = 0;
  const zero = () => ({ requests: 0, withCredentials: 0, lost: 0, authFailures: { 401: 0, 403: 0, 419: 0 } });
  const totals: Record<Color, ReturnType<typeof zero>> = { blue: zero(), green: zero() };
  const authSummary = (): Record<string, unknown> | undefined => a.auth ? {
    auth: Object.fromEntries(([a.candidate.color, a.previous.color] as const).map((c) => {
      const t = totals[c];
      return [c, { requests: t.requests, withCredentials: t.withCredentials, authFailures: t.authFailures, sessionLossRate: t.withCredentials === 0 ? 0 : t.lost / t.withCredentials }];
    })),
  } : undefined;
  try {
    for (let k = 0; k < count; k++) {
      const from = t0 + k * cfg.interval;
      const to = from + cfg.interval;
      const wait = to + EVAL_GRACE_MS - now();
      if (wait > 0) await sleep(wait, undefined, { signal: a.signal });
      if (a.signal.aborted) throw a.signal.reason;
      const cand = a.candidateWindow(from, to, a.switchAt + cfg.settle);
      const copy = synthetic?.preview ? a.previousPreviewWindow(from, to, a.switchAt + cfg.settle) : null;
      const base = baselineOk ? before : copy;
      const j = judgeInterval(cand, base, cfg);
      const label = `interval ${k + 1}/${count}`;
      let counted = j.outcome === 'failed';
      if (j.outcome === 'passed') passed++;
      if (j.outcome === 'inconclusive') {
        inconclusive++;
        if (cfg.inconclusive === 'rollback') counted = true;
      }
      if (counted) failures++;
      const authFigs = a.auth?.() ?? null;
      if (authFigs) {
        for (const c of [a.candidate.color, a.previous.color] as const) {
          const t = totals[c];
          const f = authFigs[c];
          t.requests += f.requests; t.withCredentials += f.withCredentials;
          t.lost += f.sessionLossRate * f.withCredentials;
          for (const s of ['401', '403', '419'] as const) t.authFailures[s] += f.authFailures[s];
        }
      }
      a.record({
        type: 'analysis',
        reason: `${label} ${j.outcome}${counted ? ` (${failures}/${cfg.failureLimit})` : ''}: ${j.text} [${j.requests} request(s)]${authFigs ? `; ${describeAuth(authFigs, [a.candidate.color, a.previous.color])}` : ''}`,
        data: { interval: k + 1, of: count, from, to, outcome: j.outcome, requests: j.requests, candidate: j.candidate, checks: j.checks, failures, failureLimit: cfg.failureLimit, baseline: base ? { source: baselineSource, requests: base.requests, errorRate: base.errorRate, p95: base.p95, p99: base.p99 } : null, ...(authFigs ? { auth: authFigs } : {}) },
      });
      if (counted && failures >= cfg.failureLimit) {
        const why = j.outcome === 'failed' ? failedChecks(j) : `${j.text} (inconclusive: rollback)`;
        const summary = `${why} in ${label} (${j.requests} request(s); ${failures} of failureLimit ${cfg.failureLimit})`;
        if (cfg.onFailure === 'pause') return await pause(a, `analysis of ${a.candidate.version} failed: ${summary}; judging stopped: \`cutover promote\` accepts it, \`cutover rollback\` rolls back`, { failures, passed, inconclusive });
        return { outcome: 'failed', summary, data: { interval: k + 1, checks: j.checks, candidate: j.candidate, baseline: baselineInfo, failures, failureLimit: cfg.failureLimit, ...authSummary() } };
      }
      if (j.outcome === 'inconclusive' && cfg.inconclusive === 'pause') {
        return await pause(a, `${label} of ${a.candidate.version} was inconclusive (${j.text}); judging stopped: \`cutover promote\` accepts it, \`cutover rollback\` rolls back`, { failures, passed, inconclusive });
      }
    }
  } finally {
    synthetic?.stop();
  }
  return {
    outcome: 'passed',
    summary: `stable for ${formatDuration(count * cfg.interval)}: ${passed} interval(s) passed, ${inconclusive} inconclusive, ${failures} failed (limit ${cfg.failureLimit})`,
    data: { passed, inconclusive, failures, intervals: count, baseline: baselineInfo, ...authSummary() },
  };
}

function failedChecks(j: IntervalJudgement): string {
  return j.checks.filter((c) => c.outcome === 'failed').map((c) => c.text).join('; ');
}

async function pause(a: AnalysisInput, reason: string, counts: Record<string, number>): Promise<AnalysisVerdict> {
  a.record({ type: 'analysis.paused', reason, data: counts });
  const decision = await a.awaitPromotion(reason);
  return { outcome: 'passed', summary: `accepted by ${decision.actor} after analysis paused`, data: { ...counts, acceptedBy: decision.actor } };
}

/**
 * Synthetic traffic during the bake: `rate` req/s through the live listener, and when the
 * baseline before the switch is too thin, the same through the preview listener (which serves
 * the old colour after the switch) so both colours are judged on the same requests at the same time.
 */
function startSynthetic(a: AnalysisInput, durationMs: number, withPreview: boolean): { live: LoadRun; preview: LoadRun | null; stop(): void } | null {
  const s = a.cfg.synthetic;
  if (!s) return null;
  const opts = { connections: s.connections, rate: s.rate, durationMs, method: s.method, headers: { ...s.headers, [SYNTHETIC_HEADER]: '1' }, paths: s.paths, signal: a.signal };
  const live = startLoad({ ...opts, url: a.liveUrl });
  const preview = withPreview && a.previewUrl ? startLoad({ ...opts, url: a.previewUrl }) : null;
  live.done.catch(() => undefined);
  preview?.done.catch(() => undefined);
  return { live, preview, stop: () => { live.stop(); preview?.stop(); } };
}

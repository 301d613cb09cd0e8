/**
 * Judging one step of a gradual switch. During a step both colours take live traffic at the same
 * time, so the old colour's requests in the same interval are the baseline (no drift between a
 * "before" and an "after"). The step is cut into analysis intervals (at least one); each is judged
 * with the same rules as the bake (judge.ts) and the first failure ends the step at once, so that
 * the controller returns the share to 0 % without waiting for the step's end.
 *
 * Owns: the step's verdict. Must never: move traffic (the controller does), or judge when no
 * `analysis:` is configured (then the step only waits, and says so).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Color } from '../environments/types.ts';
import type { PhaseVerdict, SwitchStep } from '../plugin-api/hooks.ts';
import type { AnalysisConfig } from '../config/analysis.ts';
import { EVAL_GRACE_MS } from './analyzer.ts';
import { judgeInterval } from './judge.ts';
import type { WindowSummary } from './recorder.ts';
import { describeAuth, type AuthFigures } from './auth-counter.ts';

export interface StepInput {
  cfg: AnalysisConfig | null;
  step: SwitchStep;
  candidate: { color: Color; version: string };
  previous: { color: Color; version: string } | null;
  candidateWindow(from: number, to: number, latencyFrom: number): WindowSummary;
  previousWindow: ((from: number, to: number) => WindowSummary) | null;
  auth(): Record<Color, AuthFigures>;
  signal: AbortSignal;
  record(e: { type: string; reason: string; data: Record<string, unknown> }): void;
  now?: () => number;
}

export async function judgeStep(s: StepInput): Promise<PhaseVerdict> {
  const now = s.now ?? Date.now;
  const pctOf = `${Math.round(s.step.share * 1000) / 10} %`;
  const order: Color[] = s.previous ? [s.candidate.color, s.previous.color] : [s.candidate.color];
  if (s.cfg === null) {
    await sleep(Math.max(0, s.step.startedAt + s.step.durationMs - now()), undefined, { signal: s.signal });
    const figs = s.auth();
    return { outcome: 'passed', summary: `not judged (no analysis configured); ${describeAuth(figs, order)}`, data: { auth: figs } };
  }
  const cfg = s.cfg;
  const n = Math.max(1, Math.round(s.step.durationMs / cfg.interval));
  const len = s.step.durationMs / n;
  let passed = 0;
  let inconclusive = 0;
  for (let k = 0; k < n; k++) {
    const from = s.step.startedAt + k * len;
    const to = from + len;
    const wait = to + EVAL_GRACE_MS - now();
    if (wait > 0) await sleep(wait, undefined, { signal: s.signal });
    const cand = s.candidateWindow(from, to, s.step.startedAt + cfg.settle);
    const base = s.previousWindow ? s.previousWindow(from, to) : null;
    // At a small share the candidate sees few requests: judge what there is against the same-time baseline.
    const j = judgeInterval(cand, base, cfg);
    const figs = s.auth();
    const label = `step ${s.step.index}/${s.step.of} (${pctOf}) interval ${k + 1}/${n}`;
    s.record({
      type: 'analysis',
      reason: `${label} ${j.outcome}: ${j.text} [${j.requests} request(s); baseline ${base?.requests ?? 0} at the same time]; ${describeAuth(figs, order)}`,
      data: { step: s.step.index, share: s.step.share, interval: k + 1, of: n, from, to, outcome: j.outcome, requests: j.requests, candidate: j.candidate, checks: j.checks, baseline: base ? { source: 'same-time', requests: base.requests, errorRate: base.errorRate, p95: base.p95, p99: base.p99 } : null, auth: figs },
    });
    if (j.outcome === 'failed' || (j.outcome === 'inconclusive' && cfg.inconclusive === 'rollback')) {
      const why = j.outcome === 'failed' ? j.checks.filter((c) => c.outcome === 'failed').map((c) => c.text).join('; ') : `${j.text} (inconclusive: rollback)`;
      return { outcome: 'failed', summary: `${why} in ${label} (${j.requests} request(s))`, data: { interval: k + 1, checks: j.checks, candidate: j.candidate, auth: figs } };
    }
    if (j.outcome === 'passed') passed++;
    else inconclusive++;
  }
  return { outcome: 'passed', summary: `${passed} interval(s) passed, ${inconclusive} inconclusive`, data: { passed, inconclusive } };
}

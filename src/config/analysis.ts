/**
 * The `analysis:` section of cutover.yaml: how the new live colour is judged after the switch.
 * Decision rules (also in docs/gates-and-analysis.md):
 *   error rate fails when  candidate > max(baseline × relative, absolute)
 *   p95/p99 fails when     candidate > baseline × relative + slack
 *   mann-whitney fails when p < significance  and  candidate median > baseline median × minEffect + slack
 */
import { z } from 'zod';
import { duration, share, urlPath } from './fields.ts';

export const DEFAULT_ANALYSIS_WINDOW_MS = 2 * 60_000; // bake for 2 minutes
export const DEFAULT_ANALYSIS_INTERVAL_MS = 10_000; // one verdict every 10 seconds
export const DEFAULT_MIN_REQUESTS = 50; // per interval; fewer = inconclusive
export const DEFAULT_ERROR_RATE_RELATIVE = 2;
export const DEFAULT_ERROR_RATE_ABSOLUTE = 0.01; // 1 %
export const DEFAULT_P95_RELATIVE = 1.5;
export const DEFAULT_P95_SLACK_MS = 20;
export const DEFAULT_P99_RELATIVE = 2;
export const DEFAULT_P99_SLACK_MS = 50;
export const DEFAULT_FAILURE_LIMIT = 1;
/** The router keeps 15 minutes of 1 s buckets; the baseline must fit in them with room to spare. */
export const MAX_BASELINE_MS = 10 * 60_000;
export const DEFAULT_MAX_BASELINE_MS = 5 * 60_000;
/**
 * Latency of requests finishing this soon after the switch is not judged: new upstream connections
 * and cold code paths make the first moments slower for any release (A/A runs here: first-second
 * p95 up to 3× the rest). Errors are judged from the first request.
 */
export const DEFAULT_SETTLE_MS = 1_000;
export const DEFAULT_MW_SIGNIFICANCE = 0.01;
export const DEFAULT_MW_MIN_EFFECT = 1.2; // candidate median at least 20 % above the baseline's
export const DEFAULT_MW_SLACK_MS = 5;
/** Synthetic connections by default: one per 5 req/s, so a release 200 ms slow still gets `rate` requests a second. */
export const SYNTHETIC_RATE_PER_CONNECTION = 5;
export const MAX_SYNTHETIC_CONNECTIONS = 64;

const latencyLimit = z.strictObject({
  relative: z.number().min(1),
  slack: duration.default(0),
});

const mannWhitney = z.strictObject({
  method: z.literal('mann-whitney'),
  significance: z.number().gt(0).lt(0.5).default(DEFAULT_MW_SIGNIFICANCE),
  minEffect: z.number().min(1).default(DEFAULT_MW_MIN_EFFECT),
  slack: duration.default(DEFAULT_MW_SLACK_MS),
});
const percentiles = z.strictObject({ method: z.literal('percentiles') });

/** `percentiles` (default), `mann-whitney`, or `{ method: mann-whitney, significance, minEffect, slack }`. */
const latencyTest = z
  .union([z.enum(['percentiles', 'mann-whitney']), z.discriminatedUnion('method', [percentiles, mannWhitney])])
  .transform((v) => (typeof v === 'string' ? (v === 'mann-whitney' ? mannWhitney.parse({ method: v }) : { method: 'percentiles' as const }) : v))
  .default({ method: 'percentiles' });

const synthetic = z.strictObject({
  /** Requests per second sent through the live listener during the bake (and as many through preview to the old colour). */
  rate: z.number().positive().max(10_000),
  paths: z.array(urlPath).min(1).default(['/']),
  connections: z.int().min(1).max(MAX_SYNTHETIC_CONNECTIONS).optional(),
  method: z.string().regex(/^[A-Za-z]+$/).transform((m) => m.toUpperCase()).default('GET'),
  headers: z.record(z.string(), z.string()).default({}),
}).transform((s) => ({
  ...s,
  connections: s.connections ?? Math.min(MAX_SYNTHETIC_CONNECTIONS, Math.max(2, Math.ceil(s.rate / SYNTHETIC_RATE_PER_CONNECTION))),
}));

export const analysisSchema = z
  .strictObject({
    window: duration.default(DEFAULT_ANALYSIS_WINDOW_MS),
    interval: duration.default(DEFAULT_ANALYSIS_INTERVAL_MS),
    minRequests: z.int().min(1).default(DEFAULT_MIN_REQUESTS),
    /** How far before the switch the old colour's live traffic is the baseline (default: the window, at most 5m). */
    baseline: duration.optional(),
    /** Latency is judged on requests that finish at least this long after the switch. */
    settle: duration.default(DEFAULT_SETTLE_MS),
    maxErrorRate: z.strictObject({
      relative: z.number().min(1).default(DEFAULT_ERROR_RATE_RELATIVE),
      absolute: share.default(DEFAULT_ERROR_RATE_ABSOLUTE),
    }).prefault({}),
    maxLatency: z.strictObject({
      p95: z.union([z.literal(false), latencyLimit]).default({ relative: DEFAULT_P95_RELATIVE, slack: DEFAULT_P95_SLACK_MS }),
      p99: z.union([z.literal(false), latencyLimit]).default({ relative: DEFAULT_P99_RELATIVE, slack: DEFAULT_P99_SLACK_MS }),
    }).prefault({}),
    latencyTest,
    failureLimit: z.int().min(1).default(DEFAULT_FAILURE_LIMIT),
    inconclusive: z.enum(['continue', 'rollback', 'pause']).default('continue'),
    onFailure: z.enum(['rollback', 'pause']).default('rollback'),
    synthetic: synthetic.optional(),
  })
  .superRefine((a, ctx) => {
    if (a.interval < 1_000) ctx.addIssue({ code: 'custom', path: ['interval'], message: 'expected at least 1s: the router counts requests in 1-second buckets' });
    if (a.interval > a.window) ctx.addIssue({ code: 'custom', path: ['interval'], message: `expected at most the window (${a.window}ms)` });
    if (a.baseline !== undefined && (a.baseline < 1_000 || a.baseline > MAX_BASELINE_MS)) {
      ctx.addIssue({ code: 'custom', path: ['baseline'], message: 'expected from 1s to 10m (the router keeps 15 minutes of request stats)' });
    }
  })
  .transform((a) => ({
    ...a,
    // Whole seconds: intervals are cut on the router's 1 s bucket boundaries.
    interval: Math.round(a.interval / 1_000) * 1_000,
    baseline: a.baseline ?? Math.max(1_000, Math.min(a.window, DEFAULT_MAX_BASELINE_MS)),
  }));

export type AnalysisConfig = z.infer<typeof analysisSchema>;
export type LatencyLimit = z.infer<typeof latencyLimit>;
export type MannWhitneyConfig = z.infer<typeof mannWhitney>;
export type SyntheticConfig = z.infer<typeof synthetic>;

/**
 * `mirror` gate: real live requests, copied by the router to the candidate and to the live colour
 * a second time (shadow traffic; router/mirror.ts), compared field by field. A difference counts
 * only above the noise the live colour shows against itself (Diffy's idea), per endpoint and field:
 *
 *   above-noise rate = max(0, raw − noise − Z·√(raw + noise)) / samples
 *
 * raw = samples where the candidate's value differed from the live answer's, noise = samples where
 * the second live answer differed from the first. Z·√(raw + noise) is the sampling error of the
 * difference of two such counts (Z = 3), so fields that vary anyway (ids, timestamps) do not fail
 * on chance, and a field the candidate changes in every answer fails after about ten samples.
 * The gate fails when any endpoint has a field above `maxDiffRate`.
 */
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EndpointCounts, FieldCounts, MirrorReport } from '../router/mirror-diff.ts';
import type { MirrorGateSpec } from '../config/gates.ts';
import { ms, pct, type GateResult, type GateTarget } from './types.ts';

/** Standard errors a difference must clear before it counts. */
export const MIRROR_Z = 3;
/** How often the gate reads the router's counts. */
export const MIRROR_POLL_MS = 200;
/** Endpoints and fields listed in the gate's values (largest differences first). */
const LISTED_ENDPOINTS = 20;
const LISTED_FIELDS = 10;

export interface FieldVerdict extends FieldCounts {
  endpoint: string;
  samples: number;
  /** Share of samples differing beyond noise and chance. */
  aboveNoise: number;
}

export function aboveNoise(f: Pick<FieldCounts, 'raw' | 'noise'>, samples: number): number {
  if (samples === 0) return 0;
  return Math.max(0, f.raw - f.noise - MIRROR_Z * Math.sqrt(f.raw + f.noise)) / samples;
}

/** Every field of every endpoint with its above-noise rate, largest first; `failed` those above the limit. */
export function judgeMirror(report: Pick<MirrorReport, 'endpoints'>, maxDiffRate: number): { fields: FieldVerdict[]; failed: FieldVerdict[] } {
  const fields: FieldVerdict[] = [];
  for (const e of report.endpoints) {
    for (const f of e.fields) fields.push({ ...f, endpoint: e.endpoint, samples: e.samples, aboveNoise: aboveNoise(f, e.samples) });
  }
  fields.sort((a, b) => b.aboveNoise - a.aboveNoise || b.raw - a.raw);
  return { fields, failed: fields.filter((f) => f.aboveNoise > maxDiffRate) };
}

function describe(f: FieldVerdict): string {
  const ex = f.example ? `; e.g. ${f.example.request}: live ${f.example.live ?? '(absent)'} vs candidate ${f.example.candidate ?? '(absent)'}` : '';
  return `${f.endpoint}: ${f.field} differs in ${f.raw} of ${f.samples} (noise ${f.noise}; ${pct(f.aboveNoise)} above noise)${ex}`;
}

function listed(endpoints: EndpointCounts[]): unknown[] {
  return endpoints
    .map((e) => ({ ...e, fields: e.fields.map((f) => ({ ...f, aboveNoise: aboveNoise(f, e.samples) })).sort((a, b) => b.aboveNoise - a.aboveNoise || b.raw - a.raw).slice(0, LISTED_FIELDS) }))
    .sort((a, b) => (b.fields[0]?.aboveNoise ?? 0) - (a.fields[0]?.aboveNoise ?? 0) || b.samples - a.samples)
    .slice(0, LISTED_ENDPOINTS);
}

export async function runMirrorGate(name: string, spec: MirrorGateSpec, target: GateTarget): Promise<GateResult> {
  const thresholds = { maxDiffRate: spec.maxDiffRate, minRequests: spec.minRequests, durationMs: spec.duration, sample: spec.sample, methods: spec.methods, z: MIRROR_Z };
  if (!target.hasLive) return { gate: name, kind: 'mirror', outcome: 'skipped', reason: `${name}: nothing is live to mirror (first release)`, values: {}, thresholds, durationMs: 0 };
  if (target.mirror === undefined) return { gate: name, kind: 'mirror', outcome: 'failed', reason: `${name}: this router engine cannot mirror (builtin engine only)`, values: {}, thresholds, durationMs: 0 };
  const t0 = performance.now();
  const id = `${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  await target.mirror.start({
    id, sample: spec.sample, methods: spec.methods, maxBodyBytes: spec.maxBodySize, headers: spec.headers, ignore: spec.ignore,
    queue: spec.queue, concurrency: spec.concurrency, timeoutMs: spec.requestTimeout,
  });
  let report: MirrorReport | null = null;
  try {
    const deadline = t0 + spec.duration;
    for (;;) {
      report = target.mirror.report(id);
      if ((report?.compared ?? 0) >= spec.minRequests || performance.now() >= deadline) break;
      await sleep(Math.min(MIRROR_POLL_MS, Math.max(1, deadline - performance.now())), undefined, { signal: target.signal });
    }
  } finally {
    await target.mirror.stop();
  }
  report = target.mirror.report(id) ?? report;
  const durationMs = performance.now() - t0;
  const r = report ?? { id, sampled: 0, dropped: 0, skipped: 0, liveErrors: 0, candidateErrors: 0, compared: 0, pending: 0, endpoints: [], sessions: { compared: 0, lost: 0, examples: [] } };
  const counts = `${r.compared} live request(s) compared over ${r.endpoints.length} endpoint(s) in ${ms(durationMs)} (${r.sampled} sampled, ${r.dropped} dropped, ${r.skipped} skipped, ${r.candidateErrors} candidate error(s))`;
  const { fields, failed } = judgeMirror(r, spec.maxDiffRate);
  const values = {
    sampled: r.sampled, dropped: r.dropped, skipped: r.skipped, liveErrors: r.liveErrors, candidateErrors: r.candidateErrors, compared: r.compared,
    endpoints: listed(r.endpoints), failed: failed.slice(0, LISTED_FIELDS), sessions: r.sessions, durationMs,
  };
  if (r.compared < spec.minRequests) {
    return { gate: name, kind: 'mirror', outcome: 'failed', reason: `${name}: only ${counts}, fewer than minRequests ${spec.minRequests} within ${ms(spec.duration)}: not enough live traffic to judge (raise sample or duration)`, values, thresholds, durationMs };
  }
  if (failed.length > 0) {
    const more = failed.length > 1 ? `; and ${failed.length - 1} more field(s)` : '';
    return { gate: name, kind: 'mirror', outcome: 'failed', reason: `${name}: ${counts}: ${describe(failed[0])} > maxDiffRate ${pct(spec.maxDiffRate)}${more}`, values, thresholds, durationMs };
  }
  const noisy = fields.filter((f) => f.noise > 0).length;
  return { gate: name, kind: 'mirror', outcome: 'passed', reason: `${name}: ${counts}: no field differs above the noise (limit ${pct(spec.maxDiffRate)}; ${noisy} noisy field(s) learned from live vs live)`, values, thresholds, durationMs };
}

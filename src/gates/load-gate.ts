/** `load` gate: autocannon against the preview listener; thresholds on error rate, p95 and p99. */
import type { LoadGateSpec } from '../config/gates.ts';
import { startLoad } from './load-generator.ts';
import { ms, pct, requestParts, substitute, type GateResult, type GateTarget } from './types.ts';

export async function runLoadGate(name: string, spec: LoadGateSpec, target: GateTarget): Promise<GateResult> {
  const { headers, body } = requestParts(spec, target);
  const path = substitute(spec.path, target);
  const s = await startLoad({
    url: `${target.url}${path}`, connections: spec.connections, durationMs: spec.duration, rate: spec.rate,
    method: spec.method, headers, body, signal: target.signal,
  }).done;
  if (target.signal.aborted) throw target.signal.reason;
  const thresholds = { maxErrorRate: spec.maxErrorRate, ...(spec.maxP95 !== undefined ? { maxP95Ms: spec.maxP95 } : {}), ...(spec.maxP99 !== undefined ? { maxP99Ms: spec.maxP99 } : {}) };
  const values = { requests: s.requests, errors: s.byClass['5xx'] + s.byClass.failed, byClass: s.byClass, errorRate: s.errorRate, p50Ms: s.p50, p95Ms: s.p95, p99Ms: s.p99, rps: s.rps, durationMs: s.durationMs };
  const problems: string[] = [];
  const parts: string[] = [];
  if (s.requests === 0) problems.push('no request completed');
  if (s.errorRate > spec.maxErrorRate) problems.push(`error rate ${pct(s.errorRate)} > ${pct(spec.maxErrorRate)}`);
  else parts.push(`error rate ${pct(s.errorRate)} ≤ ${pct(spec.maxErrorRate)}`);
  if (spec.maxP95 !== undefined) {
    if (!(s.p95 <= spec.maxP95)) problems.push(`p95 ${ms(s.p95)} > ${ms(spec.maxP95)}`);
    else parts.push(`p95 ${ms(s.p95)} ≤ ${ms(spec.maxP95)}`);
  }
  if (spec.maxP99 !== undefined) {
    if (!(s.p99 <= spec.maxP99)) problems.push(`p99 ${ms(s.p99)} > ${ms(spec.maxP99)}`);
    else parts.push(`p99 ${ms(s.p99)} ≤ ${ms(spec.maxP99)}`);
  } else parts.push(`p99 ${ms(s.p99)}`);
  const head = `${name}: ${s.requests} × ${spec.method} ${path} over ${spec.connections} connection(s) (${Math.round(s.rps)} req/s)`;
  if (problems.length > 0) return { gate: name, kind: 'load', outcome: 'failed', reason: `${head}: ${problems.join('; ')}${parts.length ? ` (${parts.join(', ')})` : ''}`, values, thresholds, durationMs: s.durationMs };
  return { gate: name, kind: 'load', outcome: 'passed', reason: `${head}: ${parts.join(', ')}`, values, thresholds, durationMs: s.durationMs };
}

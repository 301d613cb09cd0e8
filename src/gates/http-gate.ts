/**
 * `http` gate: one request to the target, judged on status, body text, a JSON subset and
 * latency. Every mismatch is listed in the reason with the value seen and the value expected.
 */
import { performance } from 'node:perf_hooks';
import { loadUndici } from '../lib/lazy-undici.ts';
import type { HttpGateSpec } from '../config/gates.ts';
import { ms, requestParts, substitute, substituteDeep, type GateResult, type GateTarget } from './types.ts';

/** Bytes of the answer kept for the checks and the record. */
const MAX_BODY_BYTES = 1 << 20; // 1 MiB
const BODY_EXCERPT_CHARS = 200;

export async function runHttpGate(name: string, spec: HttpGateSpec, target: GateTarget, timeoutMs: number): Promise<GateResult> {
  const path = substitute(spec.path, target);
  const { headers, body } = requestParts(spec, target);
  const expectJson = spec.expect.json === undefined ? undefined : substituteDeep(spec.expect.json, target);
  const bodyContains = spec.expect.bodyContains === undefined ? undefined : substitute(spec.expect.bodyContains, target);
  const thresholds = {
    status: spec.expect.status,
    ...(bodyContains !== undefined ? { bodyContains } : {}),
    ...(expectJson !== undefined ? { json: expectJson } : {}),
    ...(spec.expect.maxLatency !== undefined ? { maxLatencyMs: spec.expect.maxLatency } : {}),
  };
  const what = `${spec.method} ${path}`;
  const { request } = await loadUndici();
  const t0 = performance.now();
  let status: number;
  let text: string;
  try {
    const res = await request(`${target.url}${path}`, {
      method: spec.method as 'GET', headers, body, reset: true,
      signal: AbortSignal.any([target.signal, AbortSignal.timeout(timeoutMs)]),
      headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
    });
    status = res.statusCode;
    text = await readCapped(res.body);
  } catch (err) {
    const latencyMs = performance.now() - t0;
    if (target.signal.aborted) throw err;
    const msg = err instanceof Error ? (err.name === 'TimeoutError' ? `no answer within ${ms(timeoutMs)}` : err.message) : String(err);
    return { gate: name, kind: 'http', outcome: 'failed', reason: `${name}: ${what} failed after ${ms(latencyMs)}: ${msg}`, values: { latencyMs, error: msg }, thresholds, durationMs: latencyMs };
  }
  const latencyMs = performance.now() - t0;
  const problems: string[] = [];
  const notes: string[] = [];
  if (!spec.expect.status.includes(status)) problems.push(`status ${status} (expected ${spec.expect.status.join(' or ')})`);
  if (bodyContains !== undefined) {
    if (text.includes(bodyContains)) notes.push(`body contains ${JSON.stringify(bodyContains)}`);
    else problems.push(`body does not contain ${JSON.stringify(bodyContains)} (got ${excerpt(text)})`);
  }
  if (expectJson !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      problems.push(`body is not JSON (got ${excerpt(text)})`);
    }
    if (parsed !== undefined) {
      const mismatch = jsonSubsetMismatch(parsed, expectJson, 'json');
      if (mismatch) problems.push(mismatch);
      else notes.push(`json matches ${JSON.stringify(expectJson)}`);
    }
  }
  if (spec.expect.maxLatency !== undefined) {
    if (latencyMs > spec.expect.maxLatency) problems.push(`latency ${ms(latencyMs)} > max ${ms(spec.expect.maxLatency)}`);
    else notes.push(`latency ≤ ${ms(spec.expect.maxLatency)}`);
  }
  const head = `${name}: ${what} → ${status} in ${ms(latencyMs)}`;
  const values = { status, latencyMs, body: excerpt(text) };
  if (problems.length > 0) return { gate: name, kind: 'http', outcome: 'failed', reason: `${head}: ${problems.join('; ')}`, values, thresholds, durationMs: latencyMs };
  return { gate: name, kind: 'http', outcome: 'passed', reason: notes.length > 0 ? `${head}; ${notes.join('; ')}` : head, values, thresholds, durationMs: latencyMs };
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= MAX_BODY_BYTES) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, MAX_BODY_BYTES).toString('utf8');
}

function excerpt(text: string): string {
  const t = text.length > BODY_EXCERPT_CHARS ? `${text.slice(0, BODY_EXCERPT_CHARS)}…` : text;
  return JSON.stringify(t);
}

/**
 * Null when `actual` contains `expected`: objects need the listed keys (recursively), arrays the
 * same length with each element matching, anything else strict equality. Else the first mismatch.
 */
export function jsonSubsetMismatch(actual: unknown, expected: unknown, at: string): string | null {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${at}: got ${short(actual)}, expected an array`;
    if (actual.length !== expected.length) return `${at}: got ${actual.length} element(s), expected ${expected.length}`;
    for (let i = 0; i < expected.length; i++) {
      const m = jsonSubsetMismatch(actual[i], expected[i], `${at}[${i}]`);
      if (m) return m;
    }
    return null;
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return `${at}: got ${short(actual)}, expected an object`;
    for (const [k, v] of Object.entries(expected)) {
      if (!(k in actual)) return `${at}.${k}: missing (expected ${short(v)})`;
      const m = jsonSubsetMismatch((actual as Record<string, unknown>)[k], v, `${at}.${k}`);
      if (m) return m;
    }
    return null;
  }
  return Object.is(actual, expected) ? null : `${at}: got ${short(actual)}, expected ${short(expected)}`;
}

function short(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

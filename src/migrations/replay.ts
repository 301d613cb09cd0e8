/**
 * Replaying requests against one instance (or a listener) and judging the answers: the sampled
 * live traffic (traffic-sample.ts) and the configured `compatibility.requests`.
 *
 * A sampled request fails when it answers 5xx, or 4xx where live answered 2xx. When something
 * in it was redacted (a credential, a cookie, a secret field) a 4xx is not judged: the redaction,
 * not the schema, may be why; `compatibility.sample.headers` can supply a test credential.
 * Must never: send anything anywhere but the given base URL, or follow redirects.
 */
import { performance } from 'node:perf_hooks';
import { request } from 'undici';
import type { CompatRequest } from '../config/database.ts';
import type { SampledRequest } from './traffic-sample.ts';

/** Characters of an answer kept in a failure: 200. */
const ANSWER_CHARS = 200;

export interface ReplayResult {
  /** `POST /products` (sample) or `request POST /products` (configured). */
  check: string;
  outcome: 'passed' | 'failed' | 'unjudged';
  status: number | null;
  reason: string;
  durationMs: number;
}

export interface ReplayOptions {
  timeoutMs: number;
  /** Set on every request (replacing a redacted value of the same header). */
  headers?: Record<string, string>;
  signal: AbortSignal;
}

/** Turn a configured request into what the sender sends. */
export function configuredRequest(r: CompatRequest): { method: string; path: string; headers: [string, string][]; body: Buffer | null } {
  const headers = Object.entries(r.headers);
  let body: Buffer | null = null;
  if (r.body !== undefined) {
    if (typeof r.body === 'string') {
      body = Buffer.from(r.body);
    } else {
      body = Buffer.from(JSON.stringify(r.body));
      if (!headers.some(([k]) => k.toLowerCase() === 'content-type')) headers.push(['content-type', 'application/json']);
    }
  }
  return { method: r.method, path: r.path, headers, body };
}

/** Send one request; the status and the start of the answer, or the error. */
export async function send(baseUrl: string, req: { method: string; path: string; headers: [string, string][]; body: Buffer | null }, o: ReplayOptions): Promise<{ status: number; text: string } | { error: string }> {
  const headers: Record<string, string> = {};
  for (const [k, v] of req.headers) headers[k.toLowerCase()] = v;
  for (const [k, v] of Object.entries(o.headers ?? {})) headers[k.toLowerCase()] = v;
  try {
    const res = await request(`${baseUrl}${req.path}`, {
      method: req.method as 'GET', headers, body: req.body ?? undefined,
      headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs, reset: true, signal: o.signal,
    });
    const text = (await res.body.text()).slice(0, ANSWER_CHARS).replace(/\s+/g, ' ').trim();
    return { status: res.statusCode, text };
  } catch (err) {
    if (o.signal.aborted) throw o.signal.reason;
    return { error: (err as Error).message };
  }
}

/** Replay sampled requests in order and judge each against what live answered. */
export async function replaySample(baseUrl: string, sample: readonly SampledRequest[], o: ReplayOptions): Promise<ReplayResult[]> {
  const out: ReplayResult[] = [];
  for (const s of sample) {
    o.signal.throwIfAborted();
    const t0 = performance.now();
    const check = `${s.method} ${s.path}`;
    const r = await send(baseUrl, { method: s.method, path: s.path, headers: s.headers, body: s.body === null ? null : Buffer.from(s.body, 'base64') }, o);
    const ms = performance.now() - t0;
    if ('error' in r) {
      out.push({ check, outcome: 'failed', status: null, reason: `${check} (live answered ${s.status}) failed: ${r.error}`, durationMs: ms });
      continue;
    }
    const liveOk = s.status >= 200 && s.status < 300;
    const judged = judge(r.status, liveOk, s.redacted.length > 0 && !coversRedaction(s, o.headers));
    out.push({
      check, outcome: judged, status: r.status, durationMs: ms,
      reason: judged === 'failed'
        ? `${check} (live answered ${s.status}) → ${r.status}: ${r.text}`
        : judged === 'unjudged'
          ? `${check} (live answered ${s.status}) → ${r.status}: not judged, it carried redacted ${s.redacted.join(', ')}`
          : `${check} → ${r.status}`,
    });
  }
  return out;
}

/** Send the configured requests; each must answer its status (default 2xx). */
export async function replayConfigured(baseUrl: string, requests: readonly CompatRequest[], o: ReplayOptions): Promise<ReplayResult[]> {
  const out: ReplayResult[] = [];
  for (const cr of requests) {
    o.signal.throwIfAborted();
    const t0 = performance.now();
    const req = configuredRequest(cr);
    const check = `request ${req.method} ${req.path}`;
    const r = await send(baseUrl, req, o);
    const ms = performance.now() - t0;
    if ('error' in r) {
      out.push({ check, outcome: 'failed', status: null, reason: `${check} failed: ${r.error}`, durationMs: ms });
      continue;
    }
    const ok = statusMatches(r.status, cr.status);
    out.push({ check, outcome: ok ? 'passed' : 'failed', status: r.status, durationMs: ms, reason: ok ? `${check} → ${r.status}` : `${check} → ${r.status} (expected ${cr.status}): ${r.text}` });
  }
  return out;
}

function judge(status: number, liveOk: boolean, redacted: boolean): ReplayResult['outcome'] {
  if (status >= 500) return 'failed';
  if (status >= 400 && liveOk) return redacted ? 'unjudged' : 'failed';
  return 'passed';
}

/** Every redacted header is supplied by the replay headers (and nothing else was redacted). */
function coversRedaction(s: SampledRequest, headers: Record<string, string> | undefined): boolean {
  if (!headers) return false;
  const given = new Set(Object.keys(headers).map((h) => h.toLowerCase()));
  return s.redacted.every((r) => (r.startsWith('header:') && given.has(r.slice(7))) || (r.startsWith('cookie:') && given.has('cookie')));
}

export function statusMatches(status: number, expected: number | string): boolean {
  if (typeof expected === 'number') return status === expected;
  return Math.floor(status / 100) === Number(expected[0]);
}

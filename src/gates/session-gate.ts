/**
 * `session` gate: session continuity across the switch (SRE guide F1/M8: sessions lost at a
 * cutover are the first failure users see). It creates sessions on the live colour with the
 * configured login request, checks that live itself accepts each one (else the gate's own
 * settings are wrong), then replays each session's cookies to the candidate through the preview
 * listener: a candidate that refuses a live session (401, 403, 419, or any status not expected)
 * would log those users out at the switch, and fails the gate. A release that keeps sessions in
 * process memory fails here; one with a shared store passes.
 *
 * With `live`, the sessions of real visitors are replayed instead (or as well): the router mirrors
 * live GET/HEAD requests that carry a Cookie or Authorization header to the candidate (and to live
 * again), and a request live accepted both times but the candidate answered 401/403/419 is a lost
 * session. The gate fails above `maxLossRate` (default 0).
 */
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { AUTH_FAILURE_STATUSES } from '../router/mirror-diff.ts';
import { DEFAULT_MIRROR_MAX_BODY_BYTES, DEFAULT_MIRROR_QUEUE, DEFAULT_MIRROR_CONCURRENCY, DEFAULT_MIRROR_REQUEST_TIMEOUT_MS } from '../config/gates.ts';
import { MIRROR_POLL_MS } from './mirror-gate.ts';
import { loadUndici } from '../lib/lazy-undici.ts';
import type { SessionGateSpec } from '../config/gates.ts';
import { ms, requestParts, substitute, type GateResult, type GateTarget } from './types.ts';

export const SESSION_REQUEST_TIMEOUT_MS = 10_000;
export { AUTH_FAILURE_STATUSES };

type Req = NonNullable<SessionGateSpec['login']>;

/** The Cookie header a browser would send back after these Set-Cookie values (name=value pairs only). */
export function cookieHeader(setCookie: string | string[] | undefined): string | null {
  if (setCookie === undefined) return null;
  const list = Array.isArray(setCookie) ? setCookie : [setCookie];
  const pairs = new Map<string, string>();
  for (const sc of list) {
    const first = sc.split(';')[0].trim();
    const eq = first.indexOf('=');
    if (eq > 0) pairs.set(first.slice(0, eq), first.slice(eq + 1));
  }
  return pairs.size === 0 ? null : [...pairs].map(([k, v]) => `${k}=${v}`).join('; ');
}

export async function runSessionGate(name: string, spec: SessionGateSpec, target: GateTarget): Promise<GateResult> {
  if (!target.hasLive || target.liveUrl === null) {
    return { gate: name, kind: 'session', outcome: 'skipped', reason: `${name}: nothing is live to create sessions on (first release)`, values: {}, thresholds: {}, durationMs: 0 };
  }
  const liveUrl = target.liveUrl;
  const created = spec.login && spec.check ? await createdSessions(name, spec, { ...target, liveUrl }) : null;
  if (created !== null && (created.outcome === 'failed' || !spec.live)) return created;
  const replayed = await liveSessions(name, spec.live!, target);
  if (created === null) return replayed;
  // Both: one result, the replay's verdict, both sets of numbers.
  return { ...replayed, reason: `${created.reason}; ${replayed.reason.slice(name.length + 2)}`, values: { created: created.values, live: replayed.values }, thresholds: { created: created.thresholds, live: replayed.thresholds }, durationMs: created.durationMs + replayed.durationMs };
}

/** Replays the sessions of live traffic through the router's mirroring (credentialed GET/HEAD only). */
async function liveSessions(name: string, live: NonNullable<SessionGateSpec['live']>, target: GateTarget): Promise<GateResult> {
  const thresholds = { sample: live.sample, minRequests: live.minRequests, durationMs: live.duration, maxLossRate: live.maxLossRate, authFailures: [...AUTH_FAILURE_STATUSES] };
  if (target.mirror === undefined) return { gate: name, kind: 'session', outcome: 'failed', reason: `${name}: this router engine cannot replay live sessions (builtin engine only)`, values: {}, thresholds, durationMs: 0 };
  const t0 = performance.now();
  const id = `${name}-sessions-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  await target.mirror.start({
    id, sample: live.sample, methods: ['GET', 'HEAD'], maxBodyBytes: DEFAULT_MIRROR_MAX_BODY_BYTES, headers: [], ignore: [],
    queue: DEFAULT_MIRROR_QUEUE, concurrency: DEFAULT_MIRROR_CONCURRENCY, timeoutMs: DEFAULT_MIRROR_REQUEST_TIMEOUT_MS, credentialsOnly: true,
  });
  try {
    const deadline = t0 + live.duration;
    while ((target.mirror.report(id)?.sessions.compared ?? 0) < live.minRequests && performance.now() < deadline) {
      await sleep(Math.min(MIRROR_POLL_MS, Math.max(1, deadline - performance.now())), undefined, { signal: target.signal });
    }
  } finally {
    await target.mirror.stop();
  }
  const durationMs = performance.now() - t0;
  const s = target.mirror.report(id)?.sessions ?? { compared: 0, lost: 0, examples: [] };
  const rate = s.compared === 0 ? 0 : s.lost / s.compared;
  const values = { replayed: s.compared, lost: s.lost, sessionLossRate: rate, examples: s.examples, durationMs };
  const head = `${name}: ${s.compared} live request(s) with credentials replayed to the candidate ${target.color} (${target.version})`;
  if (s.compared < live.minRequests) {
    return { gate: name, kind: 'session', outcome: 'failed', reason: `${head}, fewer than minRequests ${live.minRequests} within ${ms(live.duration)}: not enough signed-in traffic to judge`, values, thresholds, durationMs };
  }
  if (rate > live.maxLossRate) {
    const ex = s.examples[0];
    return { gate: name, kind: 'session', outcome: 'failed', reason: `${head}: ${s.lost} refused (session loss ${(rate * 100).toFixed(1)}% > ${(live.maxLossRate * 100).toFixed(1)}%)${ex ? `; e.g. ${ex.request}: live ${ex.live} vs candidate ${ex.candidate}` : ''}`, values, thresholds, durationMs };
  }
  return { gate: name, kind: 'session', outcome: 'passed', reason: `${head}: session loss ${(rate * 100).toFixed(1)}% (limit ${(live.maxLossRate * 100).toFixed(1)}%)`, values, thresholds, durationMs };
}

/** Creates sessions on live with the login request and replays them to the candidate. */
async function createdSessions(name: string, spec: SessionGateSpec, target: GateTarget & { liveUrl: string }): Promise<GateResult> {
  const login0 = spec.login!;
  const check0 = spec.check!;
  const thresholds = { sessions: spec.sessions, expectStatus: check0.expect.status, authFailures: [...AUTH_FAILURE_STATUSES] };
  const { request } = await loadUndici();
  const t0 = performance.now();
  const send = async (base: string, r: Req, cookie: string | null) => {
    const { headers, body } = requestParts(r, target);
    if (cookie !== null) headers.cookie = headers.cookie ? `${headers.cookie}; ${cookie}` : cookie;
    const res = await request(`${base}${substitute(r.path, target)}`, {
      method: r.method as 'GET', headers, body, signal: target.signal,
      headersTimeout: SESSION_REQUEST_TIMEOUT_MS, bodyTimeout: SESSION_REQUEST_TIMEOUT_MS,
    });
    await res.body.dump({ limit: 1 << 20 });
    return { status: res.statusCode, setCookie: res.headers['set-cookie'] };
  };
  const login = `${login0.method} ${login0.path}`;
  const check = `${check0.method} ${check0.path}`;
  const expected = check0.expect.status;
  let accepted = 0;
  let authFailures = 0;
  const refused: { session: number; status: number }[] = [];
  const fail = (why: string, values: Record<string, unknown>): GateResult => ({ gate: name, kind: 'session', outcome: 'failed', reason: `${name}: ${why}`, values: { ...values, durationMs: performance.now() - t0 }, thresholds, durationMs: performance.now() - t0 });
  for (let i = 1; i <= spec.sessions; i++) {
    let cookie: string | null;
    try {
      const l = await send(target.liveUrl, login0, null);
      cookie = cookieHeader(l.setCookie);
      if (l.status >= 400) return fail(`${login} on live answered ${l.status}: no session to replay (check the login request)`, { status: l.status });
      if (cookie === null) return fail(`${login} on live answered ${l.status} without a Set-Cookie: no session to replay`, { status: l.status });
      const onLive = await send(target.liveUrl, check0, cookie);
      if (!expected.includes(onLive.status)) return fail(`live itself answered ${check} with ${onLive.status} for a session it just created (expected ${expected.join(' or ')}): check the gate's requests`, { status: onLive.status });
      const onCandidate = await send(target.url, check0, cookie);
      if (expected.includes(onCandidate.status)) accepted++;
      else {
        if (AUTH_FAILURE_STATUSES.has(onCandidate.status)) authFailures++;
        refused.push({ session: i, status: onCandidate.status });
      }
    } catch (err) {
      if (target.signal.aborted) throw err;
      return fail(`session ${i}: ${(err as Error).message}`, { accepted, refused });
    }
  }
  const durationMs = performance.now() - t0;
  const lossRate = refused.length / spec.sessions;
  const values = { sessions: spec.sessions, accepted, refused: refused.length, authFailures, sessionLossRate: lossRate, examples: refused.slice(0, 5), durationMs };
  const head = `${name}: ${spec.sessions} session(s) created on live with ${login}, replayed to the candidate ${target.color} (${target.version}) with ${check}`;
  if (refused.length > 0) {
    return { gate: name, kind: 'session', outcome: 'failed', reason: `${head}: ${refused.length} refused (${authFailures} auth failure(s), first ${refused[0].status}; session loss ${(lossRate * 100).toFixed(0)}%): users would be logged out at the switch (sessions kept in process memory?)`, values, thresholds, durationMs };
  }
  return { gate: name, kind: 'session', outcome: 'passed', reason: `${head}: all accepted in ${ms(durationMs)} (session loss 0%)`, values, thresholds, durationMs };
}

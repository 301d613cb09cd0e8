/**
 * `session` gate: session continuity across the switch (SRE guide F1/M8: sessions lost at a
 * cutover are the first failure users see). It creates sessions on the live colour with the
 * configured login request, checks that live itself accepts each one (else the gate's own
 * settings are wrong), then replays each session's cookies to the candidate through the preview
 * listener: a candidate that refuses a live session (401, 403, 419, or any status not expected)
 * would log those users out at the switch, and fails the gate. A release that keeps sessions in
 * process memory fails here; one with a shared store passes.
 *
 * Sessions seen in live traffic are covered by the `mirror` gate: mirrored requests carry their
 * visitors' cookies, and a candidate refusing them shows as a `status` difference.
 */
import { performance } from 'node:perf_hooks';
import { loadUndici } from '../lib/lazy-undici.ts';
import type { SessionGateSpec } from './schema.ts';
import { ms, requestParts, substitute, type GateResult, type GateTarget } from './types.ts';

export const SESSION_REQUEST_TIMEOUT_MS = 10_000;
/** Statuses that mean "who are you?": the session was not recognised. 419: Laravel's expired session/CSRF. */
export const AUTH_FAILURE_STATUSES: ReadonlySet<number> = new Set([401, 403, 419]);

type Req = SessionGateSpec['login'];

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
  const thresholds = { sessions: spec.sessions, expectStatus: spec.check.expect.status, authFailures: [...AUTH_FAILURE_STATUSES] };
  if (!target.hasLive || target.liveUrl === null) {
    return { gate: name, kind: 'session', outcome: 'skipped', reason: `${name}: nothing is live to create sessions on (first release)`, values: {}, thresholds, durationMs: 0 };
  }
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
  const login = `${spec.login.method} ${spec.login.path}`;
  const check = `${spec.check.method} ${spec.check.path}`;
  const expected = spec.check.expect.status;
  let accepted = 0;
  let authFailures = 0;
  const refused: { session: number; status: number }[] = [];
  const fail = (why: string, values: Record<string, unknown>): GateResult => ({ gate: name, kind: 'session', outcome: 'failed', reason: `${name}: ${why}`, values: { ...values, durationMs: performance.now() - t0 }, thresholds, durationMs: performance.now() - t0 });
  for (let i = 1; i <= spec.sessions; i++) {
    let cookie: string | null;
    try {
      const l = await send(target.liveUrl, spec.login, null);
      cookie = cookieHeader(l.setCookie);
      if (l.status >= 400) return fail(`${login} on live answered ${l.status}: no session to replay (check the login request)`, { status: l.status });
      if (cookie === null) return fail(`${login} on live answered ${l.status} without a Set-Cookie: no session to replay`, { status: l.status });
      const onLive = await send(target.liveUrl, spec.check, cookie);
      if (!expected.includes(onLive.status)) return fail(`live itself answered ${check} with ${onLive.status} for a session it just created (expected ${expected.join(' or ')}): check the gate's requests`, { status: onLive.status });
      const onCandidate = await send(target.url, spec.check, cookie);
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

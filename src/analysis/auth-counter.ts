/**
 * Per-colour authentication failures on the live listener (SRE guide M8): answers 401, 403 and
 * 419 (Laravel's expired session), and the session loss rate: the share of requests that carried
 * credentials (a Cookie or Authorization header) and were refused with one of those. A release
 * that cannot read the sessions the previous one issued shows it here within seconds of taking
 * traffic, whatever its error rate says (a 401 is not a 5xx).
 *
 * Owns: counting, fed by the router's request hook. Must never: keep per-request data or look at
 * credential values (only whether a request had any).
 */
import type { Color } from '../environments/types.ts';
import type { RequestRecord } from '../router/data-plane.ts';

export const AUTH_STATUSES = [401, 403, 419] as const;

export interface AuthFigures {
  requests: number;
  /** Requests that carried a Cookie or Authorization header. */
  withCredentials: number;
  /** Answers 401/403/419, by status. */
  authFailures: Record<'401' | '403' | '419', number>;
  /** Auth failures among the requests with credentials, over those requests (0 when none). */
  sessionLossRate: number;
}

interface Counts { requests: number; creds: number; lost: number; by: number[] }

export class AuthCounter {
  readonly #counts: Record<Color, Counts> = { blue: fresh(), green: fresh() };

  /** Hot path: one finished request (only the live listener counts). */
  observe(r: RequestRecord): void {
    if (r.listener !== 'live') return;
    const c = this.#counts[r.color];
    const w = r.weight ?? 1; // a sampled record stands for `weight` requests
    c.requests += w;
    const i = r.status === 401 ? 0 : r.status === 403 ? 1 : r.status === 419 ? 2 : -1;
    if (i >= 0) c.by[i] += w;
    if (r.credentials === true) {
      c.creds += w;
      if (i >= 0) c.lost += w;
    }
  }

  /** The figures since the last take (then counting starts again). */
  take(): Record<Color, AuthFigures> {
    const out = { blue: figures(this.#counts.blue), green: figures(this.#counts.green) };
    this.#counts.blue = fresh();
    this.#counts.green = fresh();
    return out;
  }
}

function fresh(): Counts {
  return { requests: 0, creds: 0, lost: 0, by: [0, 0, 0] };
}

function figures(c: Counts): AuthFigures {
  return { requests: c.requests, withCredentials: c.creds, authFailures: { 401: c.by[0], 403: c.by[1], 419: c.by[2] }, sessionLossRate: c.creds === 0 ? 0 : c.lost / c.creds };
}

/** `green 3 auth failure(s) (401: 3), session loss 2.1% of 140 · blue 0, session loss 0% of 150`. */
export function describeAuth(figs: Record<Color, AuthFigures>, order: readonly Color[]): string {
  return order.map((c) => {
    const f = figs[c];
    const total = f.authFailures[401] + f.authFailures[403] + f.authFailures[419];
    const by = AUTH_STATUSES.filter((s) => f.authFailures[s] > 0).map((s) => `${s}: ${f.authFailures[s]}`).join(', ');
    return `${c} ${total} auth failure(s)${by ? ` (${by})` : ''}, session loss ${(f.sessionLossRate * 100).toFixed(1)}% of ${f.withCredentials}`;
  }).join(' · ');
}

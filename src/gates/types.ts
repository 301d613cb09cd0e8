/**
 * The one interface every gate kind implements: run against a target, return a result with the
 * measured values, the thresholds they were held to and one line saying why. A gate never
 * decides what happens next (the runner stops at the first failure; the controller acts).
 */
import type { GateKind } from '../config/gates.ts';
import type { MirrorReport } from '../router/mirror-diff.ts';
import type { MirrorSpec } from '../router/route-table.ts';

/**
 * Turning the router's mirroring on and off and reading its counts (the `mirror` gate). Small and
 * serialisable on purpose: the router may run in another process.
 */
export interface MirrorControl {
  /** Mirror live requests by `spec` until stop(); resolves once the router has it. */
  start(spec: MirrorSpec): Promise<void>;
  stop(): Promise<void>;
  report(id: string): MirrorReport | null;
}

/** Where a gate runs: the preview listener before the switch, the live listener after it. */
export interface GateTarget {
  /** Base URL the gate sends its requests to (preview, or live for the post-switch smoke). */
  url: string;
  /** Which listener `url` is. */
  listener: 'preview' | 'live';
  /** The live listener, for `compare` and for CUTOVER_LIVE_URL; null when nothing is live. */
  liveUrl: string | null;
  /** Whether something is live (else compare has nothing to compare with). */
  hasLive: boolean;
  version: string;
  color: string;
  /** Release directory (command gates run there), else the config file's directory. */
  cwd: string;
  signal: AbortSignal;
  /** The router's mirroring (absent where the engine has none: the mirror gate then fails and says so). */
  mirror?: MirrorControl;
}

export type GateOutcome = 'passed' | 'failed' | 'skipped';

export interface GateResult {
  gate: string;
  kind: GateKind;
  outcome: GateOutcome;
  /** One line with the numbers, e.g. `GET /version → 200 in 4ms; json.version = "v2"`. */
  reason: string;
  values: Record<string, unknown>;
  thresholds: Record<string, unknown>;
  durationMs: number;
  /** command gates: the tail of the combined stdout/stderr. */
  output?: string;
}

/** Substitute `{version}` and `{color}` in a string. */
export function substitute(text: string, t: Pick<GateTarget, 'version' | 'color'>): string {
  return text.replaceAll('{version}', t.version).replaceAll('{color}', t.color);
}

/** Substitute in every string of a JSON value. */
export function substituteDeep(v: unknown, t: Pick<GateTarget, 'version' | 'color'>): unknown {
  if (typeof v === 'string') return substitute(v, t);
  if (Array.isArray(v)) return v.map((x) => substituteDeep(x, t));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substituteDeep(x, t)]));
  return v;
}

/**
 * Headers and body of a configured request with `{version}`/`{color}` substituted; a mapping body
 * is sent as JSON (with a content-type unless one was given). Shared by the `http` and `load` gates.
 */
export function requestParts(spec: { headers: Record<string, string>; body?: unknown }, t: Pick<GateTarget, 'version' | 'color'>): { headers: Record<string, string>; body: string | undefined } {
  const headers: Record<string, string> = Object.fromEntries(Object.entries(spec.headers).map(([k, v]) => [k.toLowerCase(), substitute(v, t)]));
  let body: string | undefined;
  if (typeof spec.body === 'string') body = substitute(spec.body, t);
  else if (spec.body !== undefined) {
    body = JSON.stringify(substituteDeep(spec.body, t));
    headers['content-type'] ??= 'application/json';
  }
  return { headers, body };
}

/** Nearest-rank quantile of ascending-sorted values (the same rule as the router's stats); NaN when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1];
}

export function ms(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v >= 100 ? `${Math.round(v)}ms` : `${Number(v.toFixed(1))}ms`;
}

export function pct(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  return `${Number((v * 100).toFixed(v < 0.01 ? 2 : 1))}%`;
}

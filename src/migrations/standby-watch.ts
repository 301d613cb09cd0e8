/**
 * Watching the rollback target after a migration: the read-only part of the traffic sample
 * (GET, HEAD, OPTIONS) is replayed against the warm standby through the router's preview
 * listener, which serves the standby whenever no candidate is deployed. A standby that fails
 * (5xx, or 4xx where live answered 2xx) can no longer serve the schema: status says so.
 *
 * Must never: send a write to the standby (it runs on the real database), or report on a colour
 * the preview listener was not serving for the whole replay (then the check is skipped).
 */
import type { RouteTable } from '../router/route-table.ts';
import type { Color } from '../environments/types.ts';
import { replaySample } from './replay.ts';
import { isReadOnly, type SampledRequest } from './traffic-sample.ts';

export interface StandbyCheck {
  color: Color;
  version: string;
  /** What it was checked after (`expand migrations of d-…`, `contract 004_drop.contract.sql`). */
  after: string;
  checkedAt: number;
  outcome: 'passed' | 'failed' | 'skipped';
  /** Requests replayed. */
  checked: number;
  /** One line per failed request: `GET / (live answered 200) → 500: …`. */
  failures: string[];
  reason: string;
}

export interface WatchOptions {
  previewUrl: string | null;
  table: () => RouteTable;
  standby: { color: Color; version: string };
  sample: readonly SampledRequest[];
  after: string;
  timeoutMs: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export async function watchStandby(o: WatchOptions): Promise<StandbyCheck> {
  const base = { color: o.standby.color, version: o.standby.version, after: o.after, checkedAt: Date.now(), checked: 0, failures: [] as string[] };
  const servesStandby = () => {
    const p = o.table().preview;
    return p !== null && p.color === o.standby.color && p.version === o.standby.version;
  };
  const sample = o.sample.filter((s) => isReadOnly(s.method));
  if (o.previewUrl === null) return { ...base, outcome: 'skipped', reason: 'no preview listener (router.preview) to reach the standby through' };
  if (sample.length === 0) return { ...base, outcome: 'skipped', reason: 'no read-only request recorded yet to replay' };
  if (!servesStandby()) return { ...base, outcome: 'skipped', reason: `the preview listener does not serve the standby ${o.standby.color} (${o.standby.version}) now` };
  const results = await replaySample(o.previewUrl, sample, { timeoutMs: o.timeoutMs, headers: o.headers, signal: o.signal ?? new AbortController().signal });
  if (!servesStandby()) return { ...base, outcome: 'skipped', reason: 'the preview listener moved to another colour during the check' };
  const failures = results.filter((r) => r.outcome === 'failed').map((r) => r.reason);
  return {
    ...base, checked: results.length, failures, outcome: failures.length > 0 ? 'failed' : 'passed',
    reason: failures.length > 0
      ? `the standby ${o.standby.color} (${o.standby.version}) fails ${failures.length} of ${results.length} recorded read-only request(s) after ${o.after}: ${failures.slice(0, 3).join('; ')}`
      : `the standby ${o.standby.color} (${o.standby.version}) answers all ${results.length} recorded read-only request(s) after ${o.after}`,
  };
}

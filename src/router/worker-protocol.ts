/**
 * Messages between the worker pool (src/router/workers.ts) and its data-plane threads
 * (src/router/worker-entry.ts). Finished requests travel as flat arrays, five slots a record, so
 * that a batch of thousands is one structured clone of one array.
 *
 * Owns: the message shapes and the record encoding. Must never: carry functions or sockets.
 */
import type { Color } from '../environments/types.ts';
import type { ApplyReport, DrainReport } from './data-plane.ts';
import type { ProxyErrorKind, ListenerName } from './request-stats.ts';
import type { RouterOptions } from './router.ts';
import type { RequestRecord } from './data-plane.ts';

/** What a worker needs to build its Router; functions (health, hooks, logger) are rebuilt there. */
export interface WorkerInit {
  index: number;
  options: Omit<RouterOptions, 'health' | 'logger' | 'onRequest'>;
  table: unknown;
  down: string[];
  logLevel: string;
  wantRecords: boolean;
}

export type ToWorker =
  | { type: 'swap'; table: unknown }
  | { type: 'health'; id: string; healthy: boolean }
  | { type: 'reloadTls' }
  | { type: 'close' };

export type FromWorker =
  | { type: 'listening'; addresses: { live: { host: string; port: number }; preview: { host: string; port: number } | null } }
  | { type: 'failed'; error: string }
  | { type: 'swapped'; revision: number }
  | { type: 'drain'; revision: number; report: DrainReport }
  | { type: 'failure'; id: string; reason: string }
  | { type: 'records'; records: (number | string)[]; inFlight: number[]; rejections: Record<string, number> }
  | { type: 'tlsReloaded'; ok: boolean; error: string | null }
  | { type: 'closed' };

const LISTENERS: readonly ListenerName[] = ['live', 'preview'];
const COLORS: readonly Color[] = ['blue', 'green'];
const ERRORS: readonly (ProxyErrorKind | undefined)[] = [undefined, 'connect', 'timeout', 'reset', 'no-healthy'];
/** Slots per record: lane (listener × 2 + colour) + error × 4, status, duration ms, method, version. */
export const RECORD_SLOTS = 5;

export function encodeRecord(out: (number | string)[], r: RequestRecord): void {
  out.push(
    (r.listener === 'live' ? 0 : 2) + (r.color === 'blue' ? 0 : 1) + ERRORS.indexOf(r.error) * 4,
    r.status,
    r.durationMs,
    r.method,
    r.version,
  );
}

export function decodeRecords(records: (number | string)[], each: (r: RequestRecord) => void): void {
  for (let i = 0; i + RECORD_SLOTS <= records.length; i += RECORD_SLOTS) {
    const code = records[i] as number;
    const lane = code % 4;
    const r: RequestRecord = {
      listener: LISTENERS[lane >> 1],
      color: COLORS[lane & 1],
      status: records[i + 1] as number,
      durationMs: records[i + 2] as number,
      method: records[i + 3] as string,
      version: records[i + 4] as string,
    };
    const e = ERRORS[Math.floor(code / 4)];
    if (e !== undefined) r.error = e;
    each(r);
  }
}

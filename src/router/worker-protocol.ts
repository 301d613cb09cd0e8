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
import type { CapturedRequest, RequestRecord } from './data-plane.ts';
import type { CaptureSpec } from './capture-spec.ts';

/** What a worker needs to build its Router; functions (health, hooks, logger) are rebuilt there. */
export interface WorkerInit {
  index: number;
  options: Omit<RouterOptions, 'health' | 'logger' | 'onRequest'>;
  table: unknown;
  down: string[];
  logLevel: string;
  wantRecords: boolean;
  /** The traffic sample's capture in force (a replaced worker keeps copying). */
  capture: CaptureSpec | null;
}

export type ToWorker =
  | { type: 'swap'; table: unknown }
  | { type: 'health'; id: string; healthy: boolean }
  | { type: 'reloadTls' }
  | { type: 'capture'; spec: CaptureSpec | null }
  | { type: 'close' };

export type FromWorker =
  | { type: 'listening'; addresses: { live: { host: string; port: number }; preview: { host: string; port: number } | null } }
  | { type: 'failed'; error: string }
  | { type: 'swapped'; revision: number }
  | { type: 'drain'; revision: number; report: DrainReport }
  | { type: 'failure'; id: string; reason: string }
  /** `captured`: [record number in `records`, its copied request] for the requests the capture chose (bodies travel as bytes). */
  | { type: 'records'; records: (number | string)[]; inFlight: number[]; rejections: Record<string, number>; captured?: [number, CapturedRequest][] }
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

export function decodeRecords(records: (number | string)[], each: (r: RequestRecord) => void, captured: readonly [number, CapturedRequest][] = []): void {
  let next = 0;
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
    if (next < captured.length && captured[next][0] === i / RECORD_SLOTS) {
      const c = captured[next++][1];
      // A structured clone turns a Buffer into a plain Uint8Array: view the same bytes as a Buffer again.
      r.request = { ...c, body: c.body === null ? null : Buffer.from(c.body.buffer, c.body.byteOffset, c.body.byteLength) };
    }
    each(r);
  }
}

/**
 * The control channel between a controller and a `cutover router` process: newline-delimited
 * JSON messages over a stream socket (a Unix socket under stateDir on one machine). The route
 * table travels as the serialisable object it is (no field lists here), so whatever later
 * issues add to RouteTable reaches the router unchanged.
 *
 * Owns: message shapes, framing, the compact encoding of per-request records.
 * Must never: decide anything, or carry secrets (the socket is protected by stateDir's 0700).
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Color } from '../environments/types.ts';
import type { DrainReport, RequestRecord } from './data-plane.ts';
import type { ListenerName, ProxyErrorKind } from './request-stats.ts';
import type { RouteTable } from './route-table.ts';
import type { MirrorReport } from './mirror-diff.ts';
import type { CaptureSpec } from './capture-spec.ts';

/**
 * Bumped when a message changes meaning; a router and a controller of different protocols refuse each other.
 * Not bumped for additions an older peer safely ignores (the `capture` message, a record's
 * captured request): an upgraded controller still adopts a running router, which then samples nothing.
 */
export const PROTOCOL_VERSION = 1;
/** Largest control message accepted (a route table with thousands of targets fits): 8 MiB. */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
/** How often a router sends the per-request records it collected (batched, never per request). */
export const STATS_FLUSH_MS = 50;
/** Records kept for a controller that reads slowly, before the router drops (and counts) them. */
export const MAX_PENDING_RECORDS = 200_000;

export interface Addresses { live: { host: string; port: number }; preview: { host: string; port: number } | null }

/** A captured request as sent: [path, raw header pairs, body as base64 or null, truncated (1/0)]. */
export type WireRequest = [string, string[], string | null, number];

/**
 * A request record as sent: [lane, version, method, status, durationMs, errorKind, finishedAt,
 * credentials (1/0), captured request (only for requests the capture chose)].
 */
export type WireRecord = [number, string, string, number, number, number, number, number?, WireRequest?];

export type ToRouter =
  | { t: 'table'; table: RouteTable }
  /** A passive failure the controller saw (instance exit): eject it now on the router too. */
  | { t: 'down'; id: string; reason: string }
  /** A newer router process asks this one for its table before taking over the listeners. */
  | { t: 'handover' }
  /** The newer router listens: this one stops accepting, drains and exits. */
  | { t: 'retire' }
  /** Re-read router.tls (the controller got SIGHUP). */
  | { t: 'reload-tls' }
  /** Copy requests this spec chooses into the records (the traffic sample), or stop (null). Sent on every hello. */
  | { t: 'capture'; spec: CaptureSpec | null }
  /** Graceful stop of the data plane (`cutover up` shutting down without --keep-router). */
  | { t: 'stop' };

export type FromRouter =
  | { t: 'hello'; protocol: number; id: string; pid: number; version: string; startedAt: number; table: RouteTable; appliedAt: number | null; addresses: Addresses; retiring: boolean }
  | { t: 'applied'; revision: number; appliedAt: number }
  | { t: 'drain'; revision: number; report: DrainReport }
  | { t: 'stats'; records: WireRecord[]; inFlight: [number, number, number, number]; rejections: Record<string, number>; dropped: number; mirror?: MirrorReport | null }
  | { t: 'failure'; id: string; reason: string }
  /** `capture`: the spec in force, so that the newer router keeps sampling before a controller re-attaches. */
  | { t: 'handover'; table: RouteTable; capture?: CaptureSpec | null }
  | { t: 'error'; message: string };

const ERROR_KINDS: readonly (ProxyErrorKind | undefined)[] = [undefined, 'connect', 'timeout', 'reset', 'no-healthy'];

export function laneOf(listener: ListenerName, color: Color): number {
  return (listener === 'live' ? 0 : 2) + (color === 'blue' ? 0 : 1);
}

export function encodeRecord(r: RequestRecord, at: number): WireRecord {
  const w: WireRecord = [laneOf(r.listener, r.color), r.version, r.method, r.status, Math.round(r.durationMs * 1000) / 1000, ERROR_KINDS.indexOf(r.error), at];
  const req = r.request;
  if (req !== undefined) {
    // The body is already bounded by the capture's maxBodyBytes (http-exchange.ts).
    w.push(r.credentials ? 1 : 0, [req.path, req.rawHeaders, req.body === null ? null : req.body.toString('base64'), req.truncated ? 1 : 0]);
  } else if (r.credentials) {
    w.push(1);
  }
  return w;
}

export function decodeRecord(w: WireRecord): RequestRecord & { at: number } {
  const [lane, version, method, status, durationMs, err, at, credentials, req] = w;
  const rec: RequestRecord & { at: number } = {
    listener: lane < 2 ? 'live' : 'preview', color: lane % 2 === 0 ? 'blue' : 'green', version, method, status, durationMs, at,
  };
  const kind = ERROR_KINDS[err];
  if (kind !== undefined) rec.error = kind;
  if (credentials === 1) rec.credentials = true;
  if (req !== undefined) rec.request = { path: req[0], rawHeaders: req[1], body: req[2] === null ? null : Buffer.from(req[2], 'base64'), truncated: req[3] === 1 };
  return rec;
}

/**
 * Where a router of this stateDir listens for its controller. Unix socket paths are limited to
 * 107 bytes: a deeper stateDir gets a path under the temp dir named by a hash of it.
 */
export function controlSocketPath(stateDir: string): string {
  const p = path.join(stateDir, 'router.sock');
  // Room for the `.<pid>` of each router's own socket file (router-process.ts) within 107 bytes.
  if (Buffer.byteLength(p) <= 90) return p;
  return path.join(os.tmpdir(), `cutover-router-${createHash('sha256').update(stateDir).digest('hex').slice(0, 16)}.sock`);
}

/** Writes one message; returns false when the socket is buffering (the caller may drop stats). */
export function send(socket: Socket, msg: ToRouter | FromRouter): boolean {
  if (socket.destroyed || !socket.writable) return false;
  return socket.write(`${JSON.stringify(msg)}\n`);
}

/** Calls `onMessage` for every complete line; a line that is not JSON or too long ends the connection. */
export function readMessages<T>(socket: Socket, onMessage: (m: T) => void): void {
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_MESSAGE_BYTES) { socket.destroy(new Error('control message too large')); return; }
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line === '') continue;
      let msg: T;
      try {
        msg = JSON.parse(line) as T;
      } catch {
        socket.destroy(new Error('control message is not JSON'));
        return;
      }
      onMessage(msg);
    }
  });
}

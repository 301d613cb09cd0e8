/**
 * Reads HAProxy's request log live from its in-memory ring (`show events <ring> -w -n` on the
 * admin socket) and turns each line into a request record: which listener and colour (from the
 * backend name), status, latency, and the proxy error kind, the way the builtin router reports
 * them, so that stats, analysis, metrics and the dashboard work on this engine unchanged.
 *
 * HAProxy writes into the ring without waiting for us (a reader that falls behind loses the
 * oldest lines, never slows traffic); the stream is reopened whenever it closes (reload, restart).
 *
 * Owns: the log stream and line parsing. Must never: block or throttle HAProxy, or allocate more
 * than one record per line.
 */
import net from 'node:net';
import type { Color } from '../../environments/types.ts';
import type { ListenerName, ProxyErrorKind } from '../../router/request-stats.ts';
import { REQUEST_RING } from './config.ts';

export interface LoggedRequest {
  listener: ListenerName;
  color: Color;
  server: string;
  method: string;
  status: number;
  durationMs: number;
  error?: ProxyErrorKind;
  /** The N of the 1-in-N sampling the line was logged under (1: every such request is logged). */
  weight: number;
  /** HAProxy sent an answer (so its `show stat` response counters already count the request). */
  answered: boolean;
}

/** Wait before reopening a closed stream (HAProxy reloading or restarting). */
const REOPEN_DELAY_MS = 100;


/** Listener and colour of each per-colour backend. */
export const BACKEND_LANES: Record<string, { listener: ListenerName; color: Color }> = {
  live_blue: { listener: 'live', color: 'blue' },
  live_green: { listener: 'live', color: 'green' },
  preview_blue: { listener: 'preview', color: 'blue' },
  preview_green: { listener: 'preview', color: 'green' },
};

/**
 * One line of REQUEST_LOG_FORMAT (`%b %s %ST %ts %Ta %HM %Tr <weight>`) → a record, or null for
 * lines of other backends (no route: nothing was chosen, as with the builtin router's own 503s).
 */
export function parseRequestLine(line: string): LoggedRequest | null {
  const f = line.split(' ');
  if (f.length < 6) return null;
  const lane = BACKEND_LANES[f[0]];
  if (lane === undefined) return null;
  const server = f[1];
  let status = Number(f[2]);
  const answered = status > 0;
  const w = f.length > 7 ? Number(f[7]) : 1; // `-` (not set: never sampled) → NaN → 1
  const weight = w >= 1 ? Math.floor(w) : 1;
  const ts = f[3];
  // A WebSocket (101) is logged when it closes: its latency is the handshake's (%Tr).
  const durationMs = Math.max(0, Number(status === 101 && f.length > 6 ? f[6] : f[4]));
  let error: ProxyErrorKind | undefined;
  const who = ts.charCodeAt(0);
  const when = ts.charCodeAt(1);
  if (server === '<NOSRV>' && status === 503) error = 'no-healthy';
  else if (who === 83 /* S */) error = when === 67 /* C */ ? 'connect' : 'reset';
  else if (who === 115 /* s */) error = 'timeout';
  // A client that left before its answer: 499, as the builtin router counts it.
  if (who === 67 /* C */ && (status <= 0 || when !== 68 /* D */)) status = 499;
  else if (status <= 0) status = error === 'timeout' ? 504 : 502;
  const r: LoggedRequest = { listener: lane.listener, color: lane.color, server, method: f[5], status, durationMs, weight, answered };
  if (error !== undefined) r.error = error;
  return r;
}

export class RequestLogReader {
  readonly #socket: string;
  readonly #onRecord: (r: LoggedRequest) => void;
  #conn: net.Socket | null = null;
  #closed = false;
  #rest = '';
  #timer: NodeJS.Timeout | null = null;
  /** Lines read since start (for tests and for comparing with HAProxy's own counters). */
  lines = 0;

  constructor(socket: string, onRecord: (r: LoggedRequest) => void) {
    this.#socket = socket;
    this.#onRecord = onRecord;
  }

  /** Opens the stream; resolves once HAProxy accepted the command (lines from now on are read). */
  open(): Promise<void> {
    this.#closed = false;
    return new Promise((resolve) => {
      const c = net.connect(this.#socket);
      this.#conn = c;
      this.#rest = '';
      c.setEncoding('latin1');
      c.on('connect', () => {
        c.write(`show events ${REQUEST_RING} -w -n\n`, () => resolve());
      });
      // Read as it comes. (Pausing the stream between reads to batch lines lost lines with
      // HAProxy 2.6's `show events -w`: measured 1,360 of 3,014 requests logged.)
      c.on('data', (d: string) => this.#onData(d));
      c.on('error', () => resolve());
      c.on('close', () => {
        if (this.#conn === c) this.#conn = null;
        resolve();
        if (!this.#closed) this.#reopenSoon();
      });
    });
  }

  /** Reopens now (after a reload: the old worker's stream has ended or soon will). */
  async reopen(): Promise<void> {
    const old = this.#conn;
    this.#conn = null;
    old?.destroy();
    await this.open();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#conn?.destroy();
    this.#conn = null;
  }

  #reopenSoon(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (!this.#closed && this.#conn === null) void this.open();
    }, REOPEN_DELAY_MS);
    this.#timer.unref();
  }

  #onData(d: string): void {
    let text = this.#rest + d;
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      const line = text.slice(start, nl);
      start = nl + 1;
      if (line.length === 0) continue;
      this.lines++;
      const r = parseRequestLine(line);
      if (r !== null) {
        try { this.#onRecord(r); } catch { /* a stats hook must not break the stream */ }
      }
    }
    text = text.slice(start);
    this.#rest = text.length > 4_096 ? '' : text;
  }
}

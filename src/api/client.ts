/**
 * Client of the admin API, used by the CLI (and tests). Turns transport failures into
 * CUTOVER_ERR_UNREACHABLE and API error bodies back into CutoverError with the daemon's code.
 */
import { Agent, request } from 'undici';
import os from 'node:os';
import { rootCertificates } from 'node:tls';
import { CutoverError, isErrorCode, type ErrorCode } from '../lib/errors.ts';
import type { EventRecord, DeploymentRecord } from '../store/types.ts';
import { API_PREFIX } from './server.ts';

export interface ClientOptions {
  baseUrl: string;
  token: string;
  actor?: string;
  timeoutMs?: number;
  /** Extra trusted certificates (PEM) for an https:// daemon, e.g. the admin.tls certificate itself. */
  ca?: Buffer[];
  /** Address one service of several (`services:`): every call goes to /api/v1/services/NAME/…. */
  service?: string;
}

export type StreamMessage =
  | { kind: 'event'; event: EventRecord }
  | { kind: 'deployment'; deployment: DeploymentRecord };

export class AdminClient {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly actor: string;
  private readonly dispatcher: Agent;
  private readonly timeoutMs: number;
  /** `/services/NAME` when a service was named, else '' (the daemon's only service). */
  private readonly scope: string;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.scope = opts.service ? `/services/${encodeURIComponent(opts.service)}` : '';
    this.token = opts.token;
    this.actor = opts.actor ?? defaultActor();
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    // A self-signed admin certificate is trusted by naming it; the system roots still count.
    const connect = opts.ca && opts.ca.length > 0 ? { ca: [...rootCertificates, ...opts.ca.map((b) => b.toString('utf8'))] } : undefined;
    this.dispatcher = new Agent({ connectTimeout: 5_000, keepAliveTimeout: 1_000, ...(connect ? { connect } : {}) });
  }

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let res;
    try {
      res = await request(`${this.baseUrl}${API_PREFIX}${path === '/services' ? '' : this.scope}${path}`, {
        method,
        dispatcher: this.dispatcher,
        headers: { authorization: `Bearer ${this.token}`, 'x-cutover-actor': this.actor, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (err) {
      throw new CutoverError('CUTOVER_ERR_UNREACHABLE', `cannot reach the Cutover daemon at ${this.baseUrl}: ${(err as Error).message} (is \`cutover up\` running?)`, { cause: err });
    }
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new CutoverError('CUTOVER_ERR_UNREACHABLE', `${this.baseUrl} did not answer like a Cutover daemon (HTTP ${res.statusCode})`);
    }
    if (res.statusCode >= 400) throw apiError(res.statusCode, parsed);
    return parsed as T;
  }

  /** Follow the event stream; resolves when `until` returns true or the signal aborts. */
  /** `backlog: false` skips the stored events and streams only new ones. */
  async follow(opts: { deployment?: string; after?: number; backlog?: boolean; signal?: AbortSignal; onMessage: (m: StreamMessage) => boolean | void }): Promise<void> {
    const q = new URLSearchParams();
    if (opts.deployment) q.set('deployment', opts.deployment);
    if (opts.after !== undefined) q.set('after', String(opts.after));
    if (opts.backlog === false) q.set('backlog', 'false');
    let res;
    try {
      res = await request(`${this.baseUrl}${API_PREFIX}${this.scope}/events?${q}`, {
        method: 'GET', dispatcher: this.dispatcher, signal: opts.signal,
        headers: { authorization: `Bearer ${this.token}`, accept: 'text/event-stream' },
        headersTimeout: 10_000, bodyTimeout: 0,
      });
    } catch (err) {
      throw new CutoverError('CUTOVER_ERR_UNREACHABLE', `cannot reach the Cutover daemon at ${this.baseUrl}: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode >= 400) throw apiError(res.statusCode, await res.body.json().catch(() => ({})));
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += (chunk as Buffer).toString('utf8');
        let idx;
        while ((idx = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, idx);
          buf = buf.slice(idx + 2);
          const msg = parseSse(block);
          if (msg && opts.onMessage(msg) === true) {
            res.body.destroy();
            return;
          }
        }
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      if ((err as Error).name === 'AbortError') return;
      throw new CutoverError('CUTOVER_ERR_UNREACHABLE', `the event stream from ${this.baseUrl} broke: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

function parseSse(block: string): StreamMessage | null {
  let event = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (data === '') return null;
  const value = JSON.parse(data) as unknown;
  if (event === 'deployment') return { kind: 'deployment', deployment: value as DeploymentRecord };
  return { kind: 'event', event: value as EventRecord };
}

function apiError(status: number, body: unknown): CutoverError {
  const e = (body as { error?: { code?: string; message?: string; details?: Record<string, unknown> } }).error;
  const code: ErrorCode = isErrorCode(e?.code) ? e.code : status === 401 ? 'CUTOVER_ERR_UNAUTHORIZED' : 'CUTOVER_ERR_INTERNAL';
  return new CutoverError(code, e?.message ?? `HTTP ${status}`, { details: e?.details });
}

function defaultActor(): string {
  try {
    return `${os.userInfo().username}@${os.hostname()}`.replace(/[^\w.@+-]/g, '').slice(0, 64);
  } catch {
    return 'cli';
  }
}

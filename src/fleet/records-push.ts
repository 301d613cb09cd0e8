/**
 * Fleet mode: a router's per-request records, pushed to the controller's admin API
 * (`POST /api/v1/fleet/records`, the admin token) so that post-switch analysis, metrics and the
 * dashboard see the traffic of every router, as they do on one machine. Like Envoy's load
 * reports to its management server: the data plane pushes, the control plane aggregates.
 *
 * Owns: batching (one request at a time, at most every PUSH_INTERVAL_MS) and dropping what cannot
 * be sent. Must never: block or slow the data plane, buffer without bound, or log the token.
 */
import http from 'node:http';
import { z } from 'zod';
import https from 'node:https';
import type { Logger } from '../lib/logger.ts';
import type { StatsBatch } from '../router/router-process.ts';
import type { WireRecord } from '../router/control-protocol.ts';

/** Records are pushed at most this often: 250 ms. */
export const PUSH_INTERVAL_MS = 250;
/** Records kept while the controller is away or slow, then dropped (and counted): 100 000. */
export const MAX_QUEUED_RECORDS = 100_000;
/** One push may take this long: 5 seconds. */
const PUSH_TIMEOUT_MS = 5_000;
/** A failing push is logged at most this often: 30 seconds. */
const LOG_EVERY_MS = 30_000;

export interface RecordsBody { router: string; records: WireRecord[]; inFlight: [number, number, number, number]; rejections: Record<string, number>; dropped: number }

const count = z.number().int().min(0);
/** What the controller accepts on POST /api/v1/fleet/records (checked before anything is counted). */
export const recordsBodySchema = z.strictObject({
  router: z.string().min(1).max(253),
  // The 8th element (1: the request carried credentials) is optional.
  records: z.array(z.union([
    z.tuple([z.int().min(0).max(3), z.string().max(128), z.string().max(32), z.int().min(100).max(999), z.number().min(0), z.int().min(0).max(4), z.number().min(0)]),
    z.tuple([z.int().min(0).max(3), z.string().max(128), z.string().max(32), z.int().min(100).max(999), z.number().min(0), z.int().min(0).max(4), z.number().min(0), z.int().min(0).max(1)]),
  ])).max(MAX_QUEUED_RECORDS),
  inFlight: z.tuple([count, count, count, count]),
  rejections: z.record(z.string().max(3), count),
  dropped: count,
});

export class RecordsPush {
  #url: URL;
  readonly #token: string;
  readonly #id: string;
  readonly #log: Logger;
  readonly #agent: http.Agent;
  #queue: WireRecord[] = [];
  #last: Omit<StatsBatch, 'records'> = { inFlight: [0, 0, 0, 0], rejections: {}, dropped: 0 };
  #dropped = 0;
  #sending = false;
  #lastLog = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(o: { adminUrl: string; token: string; routerId: string; logger: Logger }) {
    this.#url = new URL('/api/v1/fleet/records', o.adminUrl);
    this.#token = o.token;
    this.#id = o.routerId;
    this.#log = o.logger;
    this.#agent = this.#url.protocol === 'https:' ? new https.Agent({ keepAlive: true, maxSockets: 1 }) : new http.Agent({ keepAlive: true, maxSockets: 1 });
    this.#timer = setInterval(() => this.#send(), PUSH_INTERVAL_MS);
    this.#timer.unref();
  }

  /** A router batch (every 50 ms): queue its records; the next push carries them. */
  add(b: StatsBatch): void {
    const room = MAX_QUEUED_RECORDS - this.#queue.length;
    if (b.records.length > room) this.#dropped += b.records.length - Math.max(0, room);
    if (room > 0) for (let i = 0; i < Math.min(room, b.records.length); i++) this.#queue.push(b.records[i]);
    this.#last = { inFlight: b.inFlight, rejections: b.rejections, dropped: b.dropped };
  }

  /**
   * Several controllers (issue 11): records go to the leader's admin API, as the leader key in etcd
   * names it (fleet-router.ts follows it); the configured URL is used until a leader is known.
   */
  setAdminUrl(adminUrl: string): void {
    const next = new URL('/api/v1/fleet/records', adminUrl);
    if (next.href === this.#url.href) return;
    if (next.protocol !== this.#url.protocol) { this.#log.warn({ controller: next.origin }, 'the leader\'s admin API uses another scheme than the configured one: records keep going to the configured controller'); return; }
    this.#url = next;
    this.#log.info({ controller: next.origin }, 'request records now go to the leading controller');
  }

  close(): void {
    clearInterval(this.#timer);
    this.#agent.destroy();
  }

  #send(): void {
    if (this.#sending) return;
    const records = this.#queue;
    this.#queue = [];
    const body: RecordsBody = { router: this.#id, records, ...this.#last, dropped: this.#last.dropped + this.#dropped };
    const payload = JSON.stringify(body);
    this.#sending = true;
    const mod = this.#url.protocol === 'https:' ? https : http;
    const req = mod.request(this.#url, {
      method: 'POST', agent: this.#agent, timeout: PUSH_TIMEOUT_MS,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), authorization: `Bearer ${this.#token}`, 'x-cutover-actor': `router ${this.#id}` },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        this.#sending = false;
        if (res.statusCode !== 204 && res.statusCode !== 200) this.#fail(records.length, `HTTP ${res.statusCode}`);
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => { this.#sending = false; this.#fail(records.length, err.message); });
    req.end(payload);
  }

  #fail(lost: number, why: string): void {
    this.#dropped += lost;
    const now = Date.now();
    if (now - this.#lastLog < LOG_EVERY_MS) return;
    this.#lastLog = now;
    this.#log.warn({ controller: this.#url.origin, reason: why, dropped: this.#dropped }, 'request records not delivered to the controller (dropped; analysis and metrics there miss them)');
  }
}

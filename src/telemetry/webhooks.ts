/**
 * Webhook notifications: each matching event is POSTed as JSON to every configured target,
 * signed with HMAC-SHA256, retried with exponential backoff.
 *
 * One queue per target, delivered strictly in order (a failing head waits, later events queue
 * behind it), so a receiver never sees `deployment.finished` before `switch`. `notify` only
 * enqueues: the pipeline is never blocked or slowed by a receiver. With a state directory the
 * queues are kept in an outbox (outbox.ts): what is undelivered at a stop is sent after the start.
 *
 * Owns: payload, signature, retry policy. Must never: log a secret or a target URL's path or
 * query (Slack-style URLs carry their credential there), throw into the caller, or hold more
 * than MAX_QUEUED_PER_TARGET events per target.
 */
import { createHmac } from 'node:crypto';
import type { Agent } from 'undici';
import { loadUndici } from '../lib/lazy-undici.ts';
import type { EventRecord } from '../store/types.ts';
import type { Logger } from '../lib/logger.ts';
import { silentLogger } from '../lib/logger.ts';
import { MAX_WEBHOOK_RETRY_DELAY_MS, type NotificationTarget } from '../config/notifications.ts';
import { Outbox, targetKey } from './outbox.ts';

export const SIGNATURE_HEADER = 'x-cutover-signature';
export const TIMESTAMP_HEADER = 'x-cutover-timestamp';
export const EVENT_HEADER = 'x-cutover-event';
export const DELIVERY_HEADER = 'x-cutover-delivery';
/** Beyond this many undelivered events a target's oldest waiting ones are dropped (and logged). */
export const MAX_QUEUED_PER_TARGET = 1_000;
/** How long close() lets queues finish before giving up on what is left. */
export const CLOSE_GRACE_MS = 2_000;

/** The JSON body a receiver gets. `text` makes it a valid Slack/Mattermost incoming-webhook message. */
export interface WebhookPayload {
  /** Unique per event and app, stable across retries (deduplicate on it). */
  id: string;
  app: string;
  type: string;
  seq: number;
  time: string;
  deployment: string | null;
  phase: string | null;
  color: string | null;
  version: string | null;
  actor: string;
  reason: string;
  durationMs: number | null;
  data: Record<string, unknown> | null;
  text: string;
}

export type DeliveryOutcome = 'delivered' | 'retried' | 'failed' | 'dropped';

export interface NotifierOptions {
  app: string;
  targets: readonly NotificationTarget[];
  logger?: Logger;
  /** Each attempt's outcome, for metrics. */
  onOutcome?: (target: string, outcome: DeliveryOutcome) => void;
  /** Keep undelivered events in `<stateDir>/webhooks.db` across restarts; null/absent: memory only. */
  stateDir?: string | null;
}

/** `sha256=<hex>` of HMAC-SHA256(secret, `${timestamp}.${rawBody}`). */
export function signPayload(secret: string, timestamp: string, rawBody: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex')}`;
}

/** `deployment.*` → matches `deployment.started`; `*` matches everything. */
export function eventMatcher(patterns: readonly string[]): (type: string) => boolean {
  const res = patterns.map((p) => new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`));
  return (type) => res.some((r) => r.test(type));
}

/** What a target is called in logs and metrics: its name, else the URL's origin (never its path). */
export function targetLabel(t: NotificationTarget): string {
  if (t.name) return t.name;
  const u = new URL(t.url);
  return u.host;
}

const ICON: Record<string, string> = {
  'deployment.started': '🚀', switch: '🔀', rollback: '↩️', failover: '⚠️', 'live.down': '🔥',
  'promote.waiting': '⏸️', abort: '⏹️', retire: '💤', 'rollback.failed': '🔥',
};
const FINISHED_ICON: Record<string, string> = { succeeded: '✅', failed: '❌', 'rolled-back': '↩️', aborted: '⏹️', interrupted: '⚠️' };

/** One readable line for chat: `*shop* ✅ v2 is live on green (d-…)`. */
export function slackText(app: string, e: EventRecord): string {
  const icon = e.type === 'deployment.finished' ? FINISHED_ICON[String(e.data?.status)] ?? 'ℹ️' : ICON[e.type] ?? 'ℹ️';
  const what = e.type === 'deployment.finished' && e.version ? `${e.version} ${String(e.data?.status ?? 'finished')}: ${e.reason}` : e.reason;
  return `*${app}* ${icon} ${what}${e.deployment ? ` (${e.deployment})` : ''}`;
}

export function payloadOf(app: string, e: EventRecord): WebhookPayload {
  return {
    id: `${app}-${e.seq}`, app, type: e.type, seq: e.seq, time: new Date(e.time).toISOString(),
    deployment: e.deployment, phase: e.phase, color: e.color, version: e.version, actor: e.actor,
    reason: e.reason, durationMs: e.durationMs, data: e.data, text: slackText(app, e),
  };
}

interface Job { payload: WebhookPayload; body: string }
/** A job in one target's queue, with its outbox row (null when memory only). */
interface Entry { job: Job; id: number | null }

/** One target's ordered queue and its single delivery loop. */
class TargetQueue {
  readonly label: string;
  readonly matches: (type: string) => boolean;
  private readonly target: NotificationTarget;
  private readonly log: Logger;
  private readonly dispatcher: () => Promise<Agent>;
  private readonly onOutcome: (outcome: DeliveryOutcome) => void;
  private readonly outbox: Outbox;
  private readonly key: string;
  private readonly jobs: Entry[] = [];
  private running: Promise<void> | null = null;
  private readonly stop = new AbortController();

  constructor(target: NotificationTarget, log: Logger, dispatcher: () => Promise<Agent>, onOutcome: (o: DeliveryOutcome) => void, outbox: Outbox) {
    this.target = target;
    this.outbox = outbox;
    this.key = targetKey(target.url);
    this.label = targetLabel(target);
    this.matches = eventMatcher(target.events);
    this.log = log.child({ webhook: this.label });
    this.dispatcher = dispatcher;
    this.onOutcome = onOutcome;
  }

  /** The entries a previous daemon left in the outbox: delivered first, in their order. */
  resume(entries: readonly { id: number | null; body: string }[]): void {
    for (const e of entries) {
      try {
        this.jobs.push({ job: { payload: JSON.parse(e.body) as WebhookPayload, body: e.body }, id: e.id });
      } catch {
        this.outbox.remove(e.id); // unreadable: never block the queue on it
      }
    }
    if (this.jobs.length > 0) {
      this.log.info({ events: this.jobs.length }, 'delivering webhook events left undelivered by the previous daemon');
      this.trim();
      this.start();
    }
  }

  push(job: Job): void {
    this.jobs.push({ job, id: this.outbox.add(this.key, job.payload.seq, job.body) });
    this.trim();
    this.start();
  }

  private trim(): void {
    while (this.jobs.length > MAX_QUEUED_PER_TARGET) {
      // Keep the head (it may be mid-delivery); drop the oldest waiting one behind it.
      const [dropped] = this.jobs.splice(1, 1);
      this.outbox.remove(dropped.id);
      this.onOutcome('dropped');
      this.log.warn({ event: dropped.job.payload.type, seq: dropped.job.payload.seq }, 'webhook queue full; dropped the oldest waiting event');
    }
  }

  private start(): void {
    this.running ??= this.drain().finally(() => { this.running = null; });
  }

  private async drain(): Promise<void> {
    while (this.jobs.length > 0 && !this.stop.signal.aborted) {
      const head = this.jobs[0];
      // Interrupted by a stop: the event stays in the outbox for the next start.
      if (!(await this.deliver(head.job))) return;
      this.outbox.remove(head.id);
      this.jobs.shift();
    }
  }

  /**
   * Attempt until delivered, refused for good (4xx other than 408/429), or out of retries: true.
   * False when a stop interrupted it (the event is neither delivered nor given up on).
   */
  private async deliver(job: Job): Promise<boolean> {
    const { target } = this;
    for (let attempt = 0; ; attempt++) {
      const r = await this.attempt(job);
      if (r.ok) {
        this.onOutcome('delivered');
        if (attempt > 0) this.log.info({ event: job.payload.type, seq: job.payload.seq, attempts: attempt + 1 }, 'webhook delivered after retrying');
        return true;
      }
      if (this.stop.signal.aborted && this.outbox.durable) return false;
      if (!r.retryable || attempt >= target.retries || this.stop.signal.aborted) {
        this.onOutcome('failed');
        this.log.warn({ event: job.payload.type, seq: job.payload.seq, attempts: attempt + 1, status: r.status, error: r.error }, 'webhook not delivered; giving up on this event');
        return true;
      }
      this.onOutcome('retried');
      const backoff = Math.min(target.retryDelay * 2 ** attempt, MAX_WEBHOOK_RETRY_DELAY_MS);
      // Full jitter on the upper half: targets that failed together do not retry in lockstep.
      let delay = backoff / 2 + Math.random() * (backoff / 2);
      if (r.retryAfterMs !== null) delay = Math.min(Math.max(delay, r.retryAfterMs), MAX_WEBHOOK_RETRY_DELAY_MS);
      this.log.debug({ event: job.payload.type, seq: job.payload.seq, attempt: attempt + 1, status: r.status, error: r.error, retryInMs: Math.round(delay) }, 'webhook attempt failed; retrying');
      await sleep(delay, this.stop.signal);
    }
  }

  private async attempt(job: Job): Promise<{ ok: boolean; retryable: boolean; status: number | null; error?: string; retryAfterMs: number | null }> {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const headers: Record<string, string> = {
      ...this.target.headers,
      'content-type': 'application/json; charset=utf-8',
      'user-agent': 'cutover-webhook/1',
      [EVENT_HEADER]: job.payload.type,
      [DELIVERY_HEADER]: job.payload.id,
      [TIMESTAMP_HEADER]: timestamp,
    };
    if (this.target.secret) headers[SIGNATURE_HEADER] = signPayload(this.target.secret, timestamp, job.body);
    try {
      const { request } = await loadUndici();
      const res = await request(this.target.url, {
        method: 'POST', body: job.body, headers, dispatcher: await this.dispatcher(),
        headersTimeout: this.target.timeout, bodyTimeout: this.target.timeout,
        signal: AbortSignal.any([this.stop.signal, AbortSignal.timeout(this.target.timeout)]),
      });
      await res.body.dump();
      const s = res.statusCode;
      if (s >= 200 && s < 300) return { ok: true, retryable: false, status: s, retryAfterMs: null };
      const retryAfter = Number(res.headers['retry-after']);
      return { ok: false, retryable: s >= 500 || s === 408 || s === 429, status: s, retryAfterMs: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter * 1000 : null };
    } catch (err) {
      // The message of a connection error names host and port only; never the path.
      return { ok: false, retryable: true, status: null, error: (err as { code?: string }).code ?? (err as Error).name, retryAfterMs: null };
    }
  }

  pending(): number {
    return this.jobs.length;
  }

  async close(graceMs: number): Promise<void> {
    if (this.running) {
      const timer = setTimeout(() => this.stop.abort(), graceMs);
      await this.running;
      clearTimeout(timer);
    }
    this.stop.abort();
    if (this.jobs.length === 0) return;
    if (this.outbox.durable) this.log.info({ undelivered: this.jobs.length }, 'daemon stopping; undelivered webhook events are kept for the next start');
    else this.log.warn({ undelivered: this.jobs.length }, 'daemon stopping; undelivered webhook events are dropped');
  }
}

export class Notifier {
  private readonly app: string;
  private readonly queues: TargetQueue[];
  /** Created with the first delivery: a daemon that sends no webhook never loads undici. */
  private dispatcher: Agent | null = null;
  private readonly outbox: Outbox;
  private closed = false;

  constructor(opts: NotifierOptions) {
    this.app = opts.app;
    const log = opts.logger ?? silentLogger;
    this.outbox = new Outbox(opts.targets.length > 0 ? opts.stateDir ?? null : null, log);
    const left = this.outbox.restore(opts.targets.map((t) => targetKey(t.url)));
    this.queues = opts.targets.map((t) => {
      const label = targetLabel(t);
      return new TargetQueue(t, log, () => this.agent(), (o) => opts.onOutcome?.(label, o), this.outbox);
    });
    this.queues.forEach((q, i) => q.resume(left.get(targetKey(opts.targets[i].url)) ?? []));
  }

  private async agent(): Promise<Agent> {
    const { Agent } = await loadUndici();
    this.dispatcher ??= new Agent({ connectTimeout: 5_000, keepAliveTimeout: 4_000 });
    return this.dispatcher;
  }

  /** Enqueue an event for every target that wants it; returns at once, never throws. */
  notify(e: EventRecord): void {
    if (this.closed) return;
    let job: Job | null = null;
    for (const q of this.queues) {
      if (!q.matches(e.type)) continue;
      if (!job) {
        const payload = payloadOf(this.app, e);
        job = { payload, body: JSON.stringify(payload) };
      }
      q.push(job);
    }
  }

  /** Events waiting or in delivery, over all targets. */
  pending(): number {
    return this.queues.reduce((n, q) => n + q.pending(), 0);
  }

  async close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    this.closed = true;
    await Promise.all(this.queues.map((q) => q.close(graceMs)));
    this.outbox.close();
    await this.dispatcher?.destroy();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) { resolve(); return; }
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); signal.removeEventListener('abort', done); resolve(); }
    signal.addEventListener('abort', done, { once: true });
  });
}

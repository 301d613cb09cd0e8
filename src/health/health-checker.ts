/**
 * Active health checking of instances, plus passive ejection reported by the router.
 * Owns: one check loop per watched target and each target's healthy/unhealthy verdict.
 * Must never route or start anything; it only says what is healthy and emits 'change'.
 *
 * @example
 *   const hc = new HealthChecker({ path: '/health', intervalMs: 1_000, timeoutMs: 2_000 });
 *   hc.watch({ id: 'green-0', host: '127.0.0.1', port: 41234 });
 *   await hc.waitHealthy(['green-0'], 30_000);
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { CutoverError } from '../lib/errors.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import type { HealthEvents, HealthMonitor } from './types.ts';

export const DEFAULT_HEALTHY_THRESHOLD = 1;
export const DEFAULT_UNHEALTHY_THRESHOLD = 2;
/** A health response body is discarded after this much: 64 KiB. */
const MAX_BODY_BYTES = 64 * 1024;

export interface HealthCheckerOptions {
  /** Request path, e.g. `/health`. */
  path: string;
  /** Pause between the end of one check and the start of the next, per target. */
  intervalMs: number;
  /** A check fails unless a 2xx status and the whole body arrive within this time. */
  timeoutMs: number;
  /** Consecutive passes that make an unhealthy (or new, or ejected) target healthy. */
  healthyThreshold?: number;
  /** Consecutive failures that make a healthy target unhealthy. */
  unhealthyThreshold?: number;
  logger?: Logger;
}

export interface HealthTarget {
  id: string;
  host: string;
  port: number;
}

export interface HealthStatus {
  healthy: boolean;
  consecutiveOk: number;
  consecutiveFail: number;
  lastError: string | null;
  lastCheckedAt: number | null;
  /** Ejected by `reportFailure`/`markDown`: stays unhealthy until `healthyThreshold` active passes. */
  ejectedUntilOk: boolean;
}

interface Watched extends HealthStatus {
  target: HealthTarget;
  timer: NodeJS.Timeout | null;
  inFlight: boolean;
  /**
   * Bumped by every ejection and by unwatch: a check that started before it answers about a
   * moment that no longer counts (the router has since seen the instance fail), so its
   * result is dropped instead of re-admitting the instance.
   */
  epoch: number;
}

export class HealthChecker extends EventEmitter<HealthEvents> implements HealthMonitor {
  private readonly opts: Required<Omit<HealthCheckerOptions, 'logger'>>;
  private readonly log: Logger;
  private readonly targets = new Map<string, Watched>();
  private readonly agent: http.Agent;
  /** Checks in flight, cut by close(). */
  private readonly probes = new Set<http.ClientRequest>();
  private closed = false;

  constructor(opts: HealthCheckerOptions) {
    super();
    this.opts = {
      path: opts.path,
      intervalMs: opts.intervalMs,
      timeoutMs: opts.timeoutMs,
      healthyThreshold: opts.healthyThreshold ?? DEFAULT_HEALTHY_THRESHOLD,
      unhealthyThreshold: opts.unhealthyThreshold ?? DEFAULT_UNHEALTHY_THRESHOLD,
    };
    this.log = (opts.logger ?? silentLogger).child({ component: 'health' });
    // Own agent: health checks never share (or wait behind) anyone's connections. No keep-alive:
    // each check proves that the instance still accepts connections, and holds none open after.
    this.agent = new http.Agent({ keepAlive: false });
    // 'change' listeners are the controller, the router, the API's event stream, waiters…
    this.setMaxListeners(0);
  }

  /**
   * Start checking a target. New targets are unhealthy until they pass `healthyThreshold`
   * checks; `assumeHealthy` starts one healthy instead (instances recorded before a daemon
   * restart, which were serving until then). Watching an id again with the same address is a
   * no-op; with a new address it starts over.
   */
  watch(target: HealthTarget, opts: { assumeHealthy?: boolean } = {}): void {
    if (this.closed) return;
    const existing = this.targets.get(target.id);
    if (existing !== undefined) {
      if (existing.target.host === target.host && existing.target.port === target.port) return;
      this.unwatch(target.id);
    }
    const w: Watched = {
      target: { id: target.id, host: target.host, port: target.port },
      healthy: opts.assumeHealthy === true, consecutiveOk: 0, consecutiveFail: 0,
      lastError: opts.assumeHealthy === true ? null : 'not checked yet', lastCheckedAt: null, ejectedUntilOk: false,
      timer: null, inFlight: false, epoch: 0,
    };
    this.targets.set(target.id, w);
    this.schedule(w, 0); // check at once: a deployment is waiting on it
  }

  unwatch(id: string): void {
    const w = this.targets.get(id);
    if (w === undefined) return;
    if (w.timer !== null) clearTimeout(w.timer);
    w.timer = null;
    w.epoch++;
    this.targets.delete(id);
  }

  isHealthy(id: string): boolean {
    return this.targets.get(id)?.healthy ?? false;
  }

  /** A copy of the target's state, or undefined when it is not watched. */
  status(id: string): HealthStatus | undefined {
    const w = this.targets.get(id);
    if (w === undefined) return undefined;
    const { healthy, consecutiveOk, consecutiveFail, lastError, lastCheckedAt, ejectedUntilOk } = w;
    return { healthy, consecutiveOk, consecutiveFail, lastError, lastCheckedAt, ejectedUntilOk };
  }

  /** Passive ejection: the router could not reach the instance. Unhealthy now, until it passes active checks again. */
  reportFailure(id: string, reason: string): void {
    this.eject(id, reason);
  }

  /** A known crash (the process exited): same as an ejection. */
  markDown(id: string, reason: string): void {
    this.eject(id, reason);
  }

  /**
   * Resolves when every id is healthy. Rejects with CUTOVER_ERR_HEALTH_TIMEOUT after
   * `timeoutMs`, or when `signal` aborts (then `details.aborted` is true); `details.unhealthy`
   * lists each id still unhealthy with its last error.
   */
  waitHealthy(ids: string[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const pending = () => ids.filter((id) => !this.isHealthy(id));
      if (pending().length === 0) return resolve();
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        clearTimeout(timer);
        this.off('change', onChange);
        signal?.removeEventListener('abort', onAbort);
      };
      const fail = (aborted: boolean) => {
        cleanup();
        const unhealthy = pending().map((id) => ({ id, lastError: this.targets.get(id)?.lastError ?? 'not watched' }));
        const what = unhealthy.map((u) => `${u.id} (${u.lastError})`).join(', ');
        const message = aborted
          ? `stopped waiting for health: ${what} not healthy yet`
          : `not healthy after ${timeoutMs}ms: ${what}`;
        reject(new CutoverError('CUTOVER_ERR_HEALTH_TIMEOUT', message, {
          cause: aborted ? signal?.reason : undefined,
          details: { ids, unhealthy, timeoutMs, aborted },
        }));
      };
      const onChange = () => {
        if (pending().length > 0) return;
        cleanup();
        resolve();
      };
      const onAbort = () => fail(true);
      if (signal?.aborted) return fail(true);
      this.on('change', onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
      timer = setTimeout(() => fail(false), timeoutMs);
    });
  }

  /** Stops every check loop and cuts checks in flight (their results would be ignored). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.targets.keys()]) this.unwatch(id);
    for (const req of this.probes) req.destroy();
    this.agent.destroy();
  }

  // ── internals ───────────────────────────────────────────────────────────────────────────

  private eject(id: string, reason: string): void {
    const w = this.targets.get(id);
    if (w === undefined) return;
    w.epoch++;
    w.consecutiveOk = 0;
    w.lastError = reason;
    w.ejectedUntilOk = true;
    if (w.healthy) this.setHealthy(w, false, reason);
  }

  private schedule(w: Watched, delayMs: number): void {
    // Checks of one target never overlap: the next is scheduled only when the last one ended.
    if (this.closed || w.timer !== null || w.inFlight || this.targets.get(w.target.id) !== w) return;
    w.timer = setTimeout(() => {
      w.timer = null;
      void this.check(w);
    }, delayMs);
    w.timer.unref();
  }

  private async check(w: Watched): Promise<void> {
    const epoch = w.epoch;
    w.inFlight = true;
    let error: string | null;
    try {
      error = await this.probe(w.target);
    } finally {
      w.inFlight = false;
    }
    if (this.targets.get(w.target.id) !== w || this.closed) return; // unwatched meanwhile
    if (w.epoch === epoch) this.record(w, error);
    this.schedule(w, this.opts.intervalMs);
  }

  /**
   * One request on a fresh connection (Connection: close — a check must not ride on, or keep, a
   * pooled socket); resolves with null on a pass, else with why it failed. Passing takes a 2xx
   * status and the whole body (read up to MAX_BODY_BYTES, the rest not waited for) within
   * timeoutMs, which bounds the whole check, connect included.
   */
  private probe(t: HealthTarget): Promise<string | null> {
    const { timeoutMs } = this.opts;
    return new Promise((resolve) => {
      const req = http.request({
        host: t.host, // an IPv6 literal unbracketed; node brackets it in the Host header
        port: t.port,
        path: this.opts.path,
        method: 'GET',
        agent: this.agent,
        headers: { 'user-agent': 'cutover-health', connection: 'close' },
      });
      let settled = false;
      const done = (result: string | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.probes.delete(req);
        req.destroy(); // the connection is not reused: free it now, not at the peer's close
        resolve(result);
      };
      const timer = setTimeout(() => done(`no answer within ${timeoutMs}ms`), timeoutMs);
      timer.unref();
      this.probes.add(req);
      req.on('error', (err) => done(describe(err)));
      req.on('response', (res) => {
        const verdict = res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300 ? null : `HTTP ${res.statusCode}`;
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > MAX_BODY_BYTES) done(verdict);
        });
        res.on('end', () => done(verdict));
        // The connection failed before the whole body arrived (ECONNRESET: aborted).
        res.on('error', (err) => done(describe(err)));
      });
      req.end();
    });
  }

  private record(w: Watched, error: string | null): void {
    w.lastCheckedAt = Date.now();
    if (error === null) {
      w.consecutiveOk++;
      w.consecutiveFail = 0;
      w.lastError = null;
      if (!w.healthy && w.consecutiveOk >= this.opts.healthyThreshold) {
        w.ejectedUntilOk = false;
        this.setHealthy(w, true, `passed ${w.consecutiveOk} check(s)`);
      }
      return;
    }
    w.consecutiveFail++;
    w.consecutiveOk = 0;
    w.lastError = error;
    if (w.healthy && w.consecutiveFail >= this.opts.unhealthyThreshold) {
      this.setHealthy(w, false, `failed ${w.consecutiveFail} check(s): ${error}`);
    }
  }

  private setHealthy(w: Watched, healthy: boolean, reason: string): void {
    w.healthy = healthy;
    this.log.info({ instance: w.target.id, healthy, reason }, healthy ? 'instance healthy' : 'instance unhealthy');
    this.emit('change', w.target.id, healthy, reason);
  }
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.code ? `${e.code}: ${e.message ?? ''}`.trim() : (e.message ?? String(err));
}

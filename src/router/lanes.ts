/**
 * In-flight bookkeeping and draining. A lane is one (listener, colour) pair; every proxied
 * request and WebSocket is linked into the lane of the snapshot it arrived under until it ends.
 * A drain waits for a lane to empty, or at its deadline aborts what is left.
 *
 * Owns: in-flight counts and drain reports. Must never: abort anything in a lane that is not
 * being drained (the live colour's connections are never touched by a drain).
 */
import type { Color } from '../environments/types.ts';
import type { DrainReport } from './data-plane.ts';
import type { ListenerName } from './request-stats.ts';

/** One request or WebSocket in flight; an intrusive list node (no allocation to link it). */
export interface Flight {
  readonly kind: 'http' | 'ws';
  lane: Lane | null;
  prev: Flight | null;
  next: Flight | null;
  /** End it now (drain deadline or shutdown). Must call `lane.remove(this)` synchronously. */
  abort(reason: string): void;
}

interface DrainState {
  revision: number;
  startedAt: number;
  timer: NodeJS.Timeout;
  resolve: (r: DrainReport) => void;
}

export class Lane {
  readonly listener: ListenerName;
  readonly color: Color;
  #head: Flight | null = null;
  count = 0;
  #drain: DrainState | null = null;

  constructor(listener: ListenerName, color: Color) {
    this.listener = listener;
    this.color = color;
  }

  add(f: Flight): void {
    f.lane = this;
    f.prev = null;
    f.next = this.#head;
    if (this.#head !== null) this.#head.prev = f;
    this.#head = f;
    this.count++;
  }

  /** Idempotent. Completes a pending drain when the lane empties. */
  remove(f: Flight): void {
    if (f.lane !== this) return;
    if (f.prev !== null) f.prev.next = f.next;
    else this.#head = f.next;
    if (f.next !== null) f.next.prev = f.prev;
    f.lane = f.prev = f.next = null;
    this.count--;
    if (this.count === 0 && this.#drain !== null) this.#finishDrain(true, 0, 0);
  }

  get draining(): boolean {
    return this.#drain !== null;
  }

  /** Starts draining; resolves when the lane empties or, after timeoutMs, once the rest is aborted. */
  startDrain(revision: number, timeoutMs: number): Promise<DrainReport> {
    if (this.#drain !== null) this.cancelDrain(); // cannot happen via swap; be safe
    return new Promise<DrainReport>((resolve) => {
      const timer = setTimeout(() => this.#deadline(), timeoutMs);
      timer.unref();
      this.#drain = { revision, startedAt: performance.now(), timer, resolve };
      if (this.count === 0) this.#finishDrain(true, 0, 0);
    });
  }

  /** The colour became live again (instant rollback): stop draining and leave its traffic alone. */
  cancelDrain(): void {
    if (this.#drain !== null) this.#finishDrain(true, 0, 0);
  }

  /** Aborts everything in the lane; returns how many requests and WebSockets were closed. */
  abortAll(reason: string): { requests: number; webSockets: number } {
    const victims: Flight[] = [];
    for (let f = this.#head; f !== null; f = f.next) victims.push(f);
    let requests = 0;
    let webSockets = 0;
    for (const f of victims) {
      if (f.kind === 'http') requests++;
      else webSockets++;
      f.abort(reason);
      this.remove(f); // in case abort() did not unlink
    }
    return { requests, webSockets };
  }

  /** Shutdown: a pending drain ends now as if its deadline passed; otherwise just abort all. */
  forceEnd(reason: string): void {
    if (this.#drain !== null) this.#deadline();
    else this.abortAll(reason);
  }

  #deadline(): void {
    const d = this.#drain;
    if (d === null) return;
    this.#drain = null; // so remove() during abortAll does not resolve as completed
    const closed = this.abortAll('drain timeout');
    this.#drain = d;
    this.#finishDrain(false, closed.requests, closed.webSockets);
  }

  #finishDrain(completed: boolean, closedRequests: number, closedWebSockets: number): void {
    const d = this.#drain;
    if (d === null) return;
    this.#drain = null;
    clearTimeout(d.timer);
    d.resolve({
      color: this.color,
      revision: d.revision,
      durationMs: Math.round(performance.now() - d.startedAt),
      completed,
      closedRequests,
      closedWebSockets,
    });
  }
}

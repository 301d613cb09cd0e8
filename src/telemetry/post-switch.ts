/**
 * After each switch, measures the new live colour's error rate and p95 over a window and the old
 * colour's over the same length before the switch (the baseline), and records them as one
 * `release.measured` event, so the release report can show them long after the router's 15
 * minutes of stats are gone.
 *
 * Owns: the measurement. Must never: judge or move traffic (analysis does that), or delay the
 * pipeline (it runs on a timer and on later events).
 */
import type { Color } from '../environments/types.ts';
import type { EventInput, EventRecord } from '../store/types.ts';
import type { StatsPoint } from '../router/request-stats.ts';

export const DEFAULT_POST_SWITCH_WINDOW_MS = 5 * 60_000; // 5 minutes after the switch, against 5 before
export const MEASURED_EVENT = 'release.measured';

export interface WindowFigures { requests: number; errorRate: number; p95Ms: number | null }

export interface PostSwitchOptions {
  /** The router's live-listener stats of one colour in [from, to) as one point. */
  measure: (color: Color, fromMs: number, toMs: number) => StatsPoint;
  record: (e: EventInput) => void;
  windowMs?: number;
  now?: () => number;
}

interface Pending { switchEvent: EventRecord; to: Color; from: Color | null; timer: NodeJS.Timeout }

export class PostSwitchMeter {
  private readonly opts: PostSwitchOptions;
  private readonly windowMs: number;
  private readonly now: () => number;
  private pending: Pending | null = null;

  constructor(opts: PostSwitchOptions) {
    this.opts = opts;
    this.windowMs = opts.windowMs ?? DEFAULT_POST_SWITCH_WINDOW_MS;
    this.now = opts.now ?? Date.now;
  }

  onEvent(e: EventRecord): void {
    if (e.type !== 'switch' && e.type !== 'rollback' && e.type !== 'failover') return;
    // Traffic moved again: the window of the previous switch ends here. Recorded on the next
    // turn: recording inside an event listener would reach other listeners before this event.
    const open = this.take();
    if (open) setImmediate(() => this.measure(open, e.time));
    if (e.type !== 'switch' || !e.color) return;
    const from = e.data?.from === 'blue' || e.data?.from === 'green' ? e.data.from : null;
    const timer = setTimeout(() => this.finish(), this.windowMs);
    timer.unref();
    this.pending = { switchEvent: e, to: e.color, from, timer };
  }

  /** Record the measurement of the open window now (at its end, or truncated by close). */
  finish(): void {
    const open = this.take();
    if (open) this.measure(open, this.now());
  }

  private take(): Pending | null {
    const p = this.pending;
    if (p) clearTimeout(p.timer);
    this.pending = null;
    return p;
  }

  private measure(p: Pending, endMs: number): void {
    const t0 = p.switchEvent.time;
    const t1 = Math.min(endMs, t0 + this.windowMs);
    const len = Math.max(1, t1 - t0);
    const after = figures(this.opts.measure(p.to, t0, t1));
    const baseline = p.from ? figures(this.opts.measure(p.from, t0 - len, t0)) : null;
    const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
    this.opts.record({
      type: MEASURED_EVENT, deployment: p.switchEvent.deployment, actor: 'cutover', color: p.to, version: p.switchEvent.version,
      durationMs: len,
      reason: `${p.switchEvent.version ?? p.to} after the switch: ${after.requests} request(s), ${pct(after.errorRate)} errors` +
        (baseline ? `; before it on ${p.from}: ${baseline.requests} request(s), ${pct(baseline.errorRate)} errors` : ''),
      data: { windowMs: len, switchSeq: p.switchEvent.seq, ...after, baseline },
    });
  }
}

function figures(p: StatsPoint): WindowFigures {
  return { requests: p.requests, errorRate: p.errorRate, p95Ms: Number.isFinite(p.p95) ? p.p95 : null };
}

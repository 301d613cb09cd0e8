/**
 * Telemetry as a daemon plugin: Prometheus metrics (`GET /metrics`), webhook notifications,
 * post-switch measurements, the dashboard (`GET /`) and its data routes
 * (`GET /api/v1/stats`, `GET /api/v1/report`).
 *
 * Owns: wiring telemetry to the controller's events and the router's request hook. Must never:
 * slow the data plane (one counter increment and one histogram observation per request) or
 * the pipeline (event handlers only count and enqueue).
 */
import type { PluginFactory, RequestContext } from '../plugin-api/plugin.ts';
import { CutoverError } from '../lib/errors.ts';
import { parseDuration } from '../lib/duration.ts';
import { COLORS, type Color } from '../environments/types.ts';
import type { ListenerName } from '../router/request-stats.ts';
import type { EventRecord } from '../store/types.ts';
import { serveDashboard } from '../ui/dashboard.ts';
import { CutoverMetrics } from './metrics.ts';
import { Notifier } from './webhooks.ts';
import { DEFAULT_POST_SWITCH_WINDOW_MS, MEASURED_EVENT, PostSwitchMeter } from './post-switch.ts';
import { computeReport } from './report.ts';

export const DEFAULT_REPORT_WINDOW = '30d';
export const MAX_STATS_MINUTES = 15; // the router keeps 15 minutes of per-second stats
const DEFAULT_STATS_STEP_MS = 10_000;
const REPORT_EVENT_TYPES = new Set(['switch', 'rollback', 'failover', MEASURED_EVENT]);

export interface TelemetryOptions {
  /** Node.js process metrics (process_*, nodejs_*); default true. */
  processMetrics?: boolean;
  /** How long after a switch the new release is measured against the old one's baseline. */
  postSwitchWindowMs?: number;
  /** Serve the dashboard at GET /; default true. */
  dashboard?: boolean;
}

export function telemetryPlugin(opts: TelemetryOptions = {}): PluginFactory {
  return ({ config, controller, router, logger, service, primary }) => {
    const log = logger.child({ component: 'telemetry' });
    const metrics = new CutoverMetrics({
      status: () => controller.status(),
      inFlight: (l, c) => router.inFlight(l, c),
      // Process metrics once per daemon, not once per service.
      processMetrics: primary === false ? false : opts.processMetrics,
    });
    // Under `services:` every series carries its service (the daemon merges the services' expositions).
    if (service !== undefined) metrics.registry.setDefaultLabels({ service });
    const notifier = new Notifier({ app: config.app, targets: config.notifications, logger: log, stateDir: config.stateDir, onOutcome: (t, o) => metrics.onNotification(t, o) });
    const meter = new PostSwitchMeter({
      windowMs: opts.postSwitchWindowMs ?? DEFAULT_POST_SWITCH_WINDOW_MS,
      measure: (color, from, to) => router.stats.series('live', color, from, to, Math.max(1, to - from))[0] ?? emptyPoint(from),
      record: (e) => controller.record(e),
    });
    const onEvent = (e: EventRecord) => {
      metrics.onEvent(e);
      notifier.notify(e);
      meter.onEvent(e);
    };
    controller.on('event', onEvent);

    const routes = async (ctx: RequestContext): Promise<boolean> => {
      if (ctx.method !== 'GET') return false;
      if (ctx.path === '/stats') {
        ctx.send(200, statsView(router.stats, ctx.query, Date.now()));
        return true;
      }
      if (ctx.path === '/report') {
        const now = Date.now();
        const since = now - durationParam(ctx.query, 'since', DEFAULT_REPORT_WINDOW);
        const deployments = controller.history({ since, limit: 10_000 });
        const events: EventRecord[] = [];
        for (let after = 0; ;) {
          const batch = controller.events({ afterSeq: after, limit: 5_000 });
          if (batch.length === 0) break;
          for (const e of batch) if (e.time >= since && REPORT_EVENT_TYPES.has(e.type)) events.push(e);
          after = batch[batch.length - 1].seq;
        }
        ctx.send(200, computeReport(deployments, events, { since, until: now + 1 }));
        return true;
      }
      return false;
    };

    return {
      onRequest: (r) => metrics.onRequest(r),
      extras: {
        metrics: () => metrics.render(),
        routes,
        ...(opts.dashboard === false ? {} : { ui: serveDashboard }),
      },
      close: async () => {
        controller.off('event', onEvent);
        meter.finish();
        await notifier.close();
      },
    };
  };
}

interface StatsSource { series: (l: ListenerName, c: Color, from: number, to: number, step: number) => { t: number; requests: number; errorRate: number; p95: number }[] }

/** Per-colour request rate, error rate and p95 per step, for the dashboard's charts. */
export function statsView(stats: StatsSource, q: URLSearchParams, now: number) {
  const minutes = Number(q.get('minutes') ?? MAX_STATS_MINUTES);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > MAX_STATS_MINUTES) {
    throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `minutes: expected a number from 1 to ${MAX_STATS_MINUTES}`, { details: { field: 'minutes' } });
  }
  const stepMs = durationParam(q, 'step', `${DEFAULT_STATS_STEP_MS}ms`);
  if (stepMs < 1_000 || stepMs > 5 * 60_000) throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', 'step: expected a duration from 1s to 5m', { details: { field: 'step' } });
  const listener = q.get('listener') ?? 'live';
  if (listener !== 'live' && listener !== 'preview') throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', 'listener: expected live or preview', { details: { field: 'listener' } });
  // Whole steps ending at the current second, so points line up from one poll to the next.
  const to = Math.ceil(now / stepMs) * stepMs;
  const from = to - Math.ceil((minutes * 60_000) / stepMs) * stepMs;
  const colors = Object.fromEntries(COLORS.map((c) => [c, stats.series(listener, c, from, to, stepMs).map((p) => ({
    t: p.t, requests: p.requests, rps: p.requests / (stepMs / 1000), errorRate: p.errorRate, p95Ms: Number.isFinite(p.p95) ? p.p95 : null,
  }))]));
  return { listener, from, to, stepMs, colors };
}

function durationParam(q: URLSearchParams, name: string, def: string): number {
  const text = q.get(name) ?? def;
  const ms = parseDuration(text);
  if (ms === null) throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `${name}: expected a duration like 10s, 15m or 30d`, { details: { field: name } });
  return ms;
}

function emptyPoint(t: number) {
  return { t, requests: 0, byClass: { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 }, errors: { connect: 0, timeout: 0, reset: 0, 'no-healthy': 0 }, errorRate: 0, p50: NaN, p95: NaN, p99: NaN };
}

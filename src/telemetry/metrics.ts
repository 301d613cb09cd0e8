/**
 * Prometheus metrics of one Cutover daemon (prom-client, a private registry): traffic per colour
 * and version, the state of both environments, and every release decision taken from the
 * controller's events.
 *
 * Owns: metric names, labels and their bounded value sets. Must never: allocate label sets per
 * request (children are resolved once and reused), throw into the data plane or the pipeline,
 * or put unbounded values (paths, instance ids, error text) into labels.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { COLORS, type Color } from '../environments/types.ts';
import type { EventRecord } from '../store/types.ts';
import type { Status } from '../plugin-api/status.ts';
import type { ListenerName } from '../router/request-stats.ts';
import type { RequestRecord } from '../router/data-plane.ts';

/** Methods kept as they are; every other method is counted as OTHER (label values stay bounded). */
export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'OTHER'] as const;
const METHOD_INDEX: Record<string, number> = Object.fromEntries(METHODS.map((m, i) => [m, i]));
const OTHER_METHOD = METHODS.length - 1;
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export const UPSTREAM_ERROR_KINDS = ['connect', 'timeout', 'reset', 'no-healthy'] as const;
const LISTENERS: readonly ListenerName[] = ['live', 'preview'];
/** Versions per (listener, colour) whose request series are kept; older ones are removed. */
export const VERSIONS_KEPT_PER_COLOR = 4;
/** How often the event-loop lag histogram (nodejs_eventloop_lag_*) samples the loop: 100 ms. */
const EVENT_LOOP_SAMPLE_MS = 100;

/** Request latency buckets, seconds: 1 ms .. 30 s. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** A route swap takes micro- to milliseconds; a rollback that restarts the standby takes seconds. */
const SWITCH_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 30];
/** Drains, phases, gates and whole deployments: 10 ms .. 30 min. */
const LONG_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

export interface MetricsSources {
  /** The controller's current status (read at scrape time and at each event). */
  status: () => Status;
  /** Requests plus WebSockets in flight (the router's lanes). */
  inFlight: (listener: ListenerName, color: Color) => number;
  /** Include Node.js process metrics (process_*, nodejs_*); default true. */
  processMetrics?: boolean;
  now?: () => number;
}

type Child<T extends { labels: (...v: string[]) => unknown }> = ReturnType<T['labels']>;

/** Request counters of one (listener, colour, version): [method × status class], created lazily. */
interface VersionChildren { version: string; counters: (Child<Counter<string>> | undefined)[] }

export class CutoverMetrics {
  readonly registry = new Registry();
  private readonly src: MetricsSources;
  private readonly now: () => number;

  private readonly requests: Counter<'listener' | 'color' | 'version' | 'method' | 'status_class'>;
  private readonly latency: Histogram<'listener' | 'color'>;
  private readonly upstreamErrors: Counter<'listener' | 'color' | 'kind'>;
  private readonly instances: Gauge<'color' | 'health'>;
  private readonly liveInfo: Gauge<'color' | 'version'>;
  private readonly splitShare: Gauge<'color'>;
  private readonly envInfo: Gauge<'color' | 'role' | 'version'>;
  private readonly deploymentInProgress: Gauge;
  private readonly routeRevision: Gauge;
  private readonly routerRevision: Gauge<'router'>;
  private readonly routerStale: Gauge<'router'>;
  private readonly routerAck: Gauge<'router'>;
  private readonly ackDuration: Histogram<'outcome'>;
  private readonly unacknowledged: Counter<'router'>;
  private readonly deploymentsStarted: Counter;
  private readonly deployments: Counter<'outcome'>;
  private readonly deploymentDuration: Histogram<'outcome'>;
  private readonly switches: Counter<'kind' | 'outcome'>;
  private readonly switchDuration: Histogram<'kind'>;
  private readonly lastSwitch: Gauge;
  private readonly rollbacks: Counter<'trigger' | 'outcome'>;
  private readonly drainDuration: Histogram<'outcome'>;
  private readonly phaseDuration: Histogram<'phase' | 'outcome'>;
  private readonly gateDuration: Histogram<'phase' | 'gate' | 'outcome'>;
  private readonly gateResults: Counter<'phase' | 'gate' | 'outcome'>;
  private readonly analysisVerdicts: Counter<'outcome'>;
  private readonly events: Counter<'type'>;
  private readonly idleSeconds: Counter<'role'>;
  private readonly notifications: Counter<'target' | 'outcome'>;

  /** Pre-resolved children for the hot path, indexed by lane (listener × colour). */
  private readonly latencyChildren: Child<Histogram<string>>[] = [];
  private readonly errorChildren: Child<Counter<string>>[][] = [];
  private readonly versionChildren: VersionChildren[][] = [[], [], [], []];

  /** Which non-live role had running instances since `idleSince` (the cost of the second environment). */
  private idle: { role: string; since: number } | null = null;

  constructor(src: MetricsSources) {
    this.src = src;
    this.now = src.now ?? Date.now;
    const registers = [this.registry];
    if (src.processMetrics !== false) {
      // The event-loop lag histogram samples every 100 ms, not prom-client's default 10 ms: 100
      // wake-ups a second were a third to a half of an idle controller's CPU (23 → 10-16 ms a
      // second), and a stall of the loop still shows in the max and the percentiles.
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
      // prom-client names three gauges nodejs_active_*_total, which `promtool check metrics`
      // rejects (only counters end in _total); the per-type breakdowns without _total stay.
      for (const m of this.registry.getMetricsAsArray()) {
        if (m.name.endsWith('_total') && !(m instanceof Counter)) this.registry.removeSingleMetric(m.name);
      }
    }

    this.requests = new Counter({ name: 'cutover_http_requests_total', help: 'Proxied requests, by listener, colour, release version, method and status class.', labelNames: ['listener', 'color', 'version', 'method', 'status_class'], registers });
    this.latency = new Histogram({ name: 'cutover_http_request_duration_seconds', help: 'Proxied request duration (to the end of the response), by listener and colour.', labelNames: ['listener', 'color'], buckets: LATENCY_BUCKETS, registers });
    this.upstreamErrors = new Counter({ name: 'cutover_upstream_errors_total', help: 'Requests the router itself failed, by kind: connect, timeout, reset, no-healthy.', labelNames: ['listener', 'color', 'kind'], registers });
    const inFlight = src.inFlight;
    new Gauge({
      name: 'cutover_http_requests_in_flight', help: 'Requests and WebSockets in flight, by listener and colour.', labelNames: ['listener', 'color'], registers,
      collect() {
        for (const listener of LISTENERS) for (const color of COLORS) this.labels(listener, color).set(inFlight(listener, color));
      },
    });
    this.instances = new Gauge({ name: 'cutover_instances', help: 'Instances of each colour by health (healthy, unhealthy).', labelNames: ['color', 'health'], registers });
    this.liveInfo = new Gauge({ name: 'cutover_live_info', help: 'The colour and release version serving live traffic (value 1).', labelNames: ['color', 'version'], registers });
    this.envInfo = new Gauge({ name: 'cutover_environment_info', help: 'Role (live, standby, candidate, retired, empty) and release of each colour (value 1).', labelNames: ['color', 'role', 'version'], registers });
    this.deploymentInProgress = new Gauge({ name: 'cutover_deployment_in_progress', help: '1 while a deployment runs or waits for promotion.', registers });
    this.splitShare = new Gauge({ name: 'cutover_live_split_share', help: 'During a gradual switch: the share of live traffic (0..1) sent to the candidate colour; absent otherwise.', labelNames: ['color'], registers });
    this.routeRevision = new Gauge({ name: 'cutover_route_revision', help: 'Revision of the route table in force.', registers });
    // Routers apart from the daemon (a router process, a fleet): one series per router id (bounded by the fleet's size).
    this.routerRevision = new Gauge({ name: 'cutover_router_revision', help: 'Route revision each router acknowledged; equal to cutover_route_revision when it serves the current table.', labelNames: ['router'], registers });
    this.routerStale = new Gauge({ name: 'cutover_router_stale', help: '1 while a router serves an older revision than the current one (cut off from the control plane, or lagging).', labelNames: ['router'], registers });
    this.routerAck = new Gauge({ name: 'cutover_router_ack_seconds', help: 'Time from publishing a router\'s latest revision to its acknowledgement, by router.', labelNames: ['router'], registers });
    this.ackDuration = new Histogram({ name: 'cutover_switch_ack_duration_seconds', help: 'Time from publishing a switch\'s route table to the last router\'s acknowledgement (or the timeout), by outcome (acknowledged, unacknowledged).', labelNames: ['outcome'], buckets: SWITCH_BUCKETS, registers });
    this.unacknowledged = new Counter({ name: 'cutover_switch_unacknowledged_total', help: 'Traffic moves a router did not acknowledge within fleet.ackTimeout, by router.', labelNames: ['router'], registers });
    this.idleSeconds = new Counter({ name: 'cutover_idle_environment_seconds_total', help: 'Seconds the colour that is not live had instances running, by its role (standby, candidate): the cost of the second environment.', labelNames: ['role'], registers });

    this.deploymentsStarted = new Counter({ name: 'cutover_deployments_started_total', help: 'Deployments started.', registers });
    this.deployments = new Counter({ name: 'cutover_deployments_total', help: 'Finished deployments by outcome (succeeded, failed, aborted, rolled-back, interrupted).', labelNames: ['outcome'], registers });
    this.deploymentDuration = new Histogram({ name: 'cutover_deployment_duration_seconds', help: 'Time from deploy to the end of the deployment, by outcome.', labelNames: ['outcome'], buckets: LONG_BUCKETS, registers });
    this.switches = new Counter({ name: 'cutover_switches_total', help: 'Route switches by kind (promote, rollback, failover) and outcome (ok, refused).', labelNames: ['kind', 'outcome'], registers });
    this.switchDuration = new Histogram({ name: 'cutover_switch_duration_seconds', help: 'Time to switch: from the decision to the new route table being in force, by kind.', labelNames: ['kind'], buckets: SWITCH_BUCKETS, registers });
    this.lastSwitch = new Gauge({ name: 'cutover_last_switch_timestamp_seconds', help: 'When live traffic last moved (Unix time).', registers });
    this.rollbacks = new Counter({ name: 'cutover_rollbacks_total', help: 'Rollbacks by trigger (manual, automatic) and outcome (completed, failed).', labelNames: ['trigger', 'outcome'], registers });
    this.drainDuration = new Histogram({ name: 'cutover_drain_duration_seconds', help: 'Time to drain the colour that left the live listener, by outcome (completed, timeout).', labelNames: ['outcome'], buckets: LONG_BUCKETS, registers });
    this.phaseDuration = new Histogram({ name: 'cutover_phase_duration_seconds', help: 'Pipeline phase durations, by phase and outcome (passed, failed, skipped).', labelNames: ['phase', 'outcome'], buckets: LONG_BUCKETS, registers });
    this.gateDuration = new Histogram({ name: 'cutover_gate_duration_seconds', help: 'Gate durations, by phase (gates before the switch, verify after it), gate and outcome.', labelNames: ['phase', 'gate', 'outcome'], buckets: LONG_BUCKETS, registers });
    this.gateResults = new Counter({ name: 'cutover_gate_results_total', help: 'Gate results, by phase (gates, verify), gate and outcome (passed, failed, skipped).', labelNames: ['phase', 'gate', 'outcome'], registers });
    this.analysisVerdicts = new Counter({ name: 'cutover_analysis_verdicts_total', help: 'Post-switch analysis verdicts, by outcome (passed, failed, skipped).', labelNames: ['outcome'], registers });
    this.notifications = new Counter({ name: 'cutover_notifications_total', help: 'Webhook delivery attempts by target and outcome (delivered, retried, failed, dropped).', labelNames: ['target', 'outcome'], registers });
    this.events = new Counter({ name: 'cutover_events_total', help: 'Recorded events, by type.', labelNames: ['type'], registers });

    for (const listener of LISTENERS) {
      for (const color of COLORS) {
        const lane = laneIndex(listener, color);
        this.latencyChildren[lane] = this.latency.labels(listener, color);
        // Initialised at 0, so that rate() sees the first error as an increase.
        this.errorChildren[lane] = UPSTREAM_ERROR_KINDS.map((k) => { const c = this.upstreamErrors.labels(listener, color, k); c.inc(0); return c; });
      }
    }
  }

  /** Hot path: one finished proxied request. Constant work, no allocation once a version is seen. */
  onRequest(r: RequestRecord): void {
    const lane = laneIndex(r.listener, r.color);
    const m = METHOD_INDEX[r.method] ?? OTHER_METHOD;
    const c = statusClassIndex(r.status);
    const v = this.childrenOf(lane, r.listener, r.color, r.version);
    const slot = m * STATUS_CLASSES.length + c;
    let counter = v.counters[slot];
    if (counter === undefined) {
      counter = this.requests.labels(r.listener, r.color, r.version, METHODS[m], STATUS_CLASSES[c]);
      v.counters[slot] = counter;
    }
    // A sampled record (HAProxy engine, 1 in N logged) stands for N requests of its kind: the
    // counters add N; the latency histogram takes it once (a uniform sample: its quantiles and
    // mean hold, its _count is the sample's; prom-client has no weighted observe).
    const w = r.weight ?? 1;
    counter.inc(w);
    this.latencyChildren[lane].observe(r.durationMs / 1000);
    if (r.error !== undefined) {
      const k = UPSTREAM_ERROR_KINDS.indexOf(r.error);
      if (k >= 0) this.errorChildren[lane][k].inc(w);
    }
  }

  private childrenOf(lane: number, listener: ListenerName, color: Color, version: string): VersionChildren {
    const list = this.versionChildren[lane];
    // Almost always the first entry: the version a colour runs changes only at a deployment.
    if (list.length > 0 && list[0].version === version) return list[0];
    const i = list.findIndex((x) => x.version === version);
    if (i > 0) {
      const [hit] = list.splice(i, 1);
      list.unshift(hit);
      return hit;
    }
    const fresh: VersionChildren = { version, counters: new Array(METHODS.length * STATUS_CLASSES.length) };
    list.unshift(fresh);
    while (list.length > VERSIONS_KEPT_PER_COLOR) {
      const old = list.pop()!;
      // Bounded series: a long-lived daemon sees many releases; keep the recent ones only.
      for (let s = 0; s < old.counters.length; s++) {
        if (old.counters[s] !== undefined) {
          this.requests.remove(listener, color, old.version, METHODS[Math.floor(s / STATUS_CLASSES.length)], STATUS_CLASSES[s % STATUS_CLASSES.length]);
        }
      }
    }
    return fresh;
  }

  /** One webhook delivery attempt's outcome (webhooks.ts). */
  onNotification(target: string, outcome: string): void {
    this.notifications.labels(target, outcome).inc();
  }

  /** A controller event: count it and feed the release metrics. Never throws. */
  onEvent(e: EventRecord): void {
    try {
      this.observeEvent(e);
    } catch {
      // Metrics must never break the pipeline.
    }
  }

  private observeEvent(e: EventRecord): void {
    this.events.labels(e.type).inc();
    const seconds = e.durationMs !== null && e.durationMs !== undefined ? e.durationMs / 1000 : null;
    const outcome = typeof e.data?.outcome === 'string' ? e.data.outcome : 'passed';
    switch (e.type) {
      case 'deployment.started':
        this.deploymentsStarted.inc();
        break;
      case 'deployment.finished': {
        const status = String(e.data?.status ?? 'unknown');
        this.deployments.labels(status).inc();
        if (seconds !== null) this.deploymentDuration.labels(status).observe(seconds);
        break;
      }
      case 'phase':
        if (e.phase) {
          if (seconds !== null) this.phaseDuration.labels(e.phase, outcome).observe(seconds);
          if (e.phase === 'switch' && outcome === 'failed') this.switches.labels('promote', 'refused').inc();
          if (e.phase === 'analysis') this.analysisVerdicts.labels(outcome).inc();
        }
        break;
      case 'switch':
      case 'rollback':
      case 'failover': {
        const kind = e.type === 'switch' ? 'promote' : e.type;
        this.switches.labels(kind, 'ok').inc();
        if (seconds !== null) this.switchDuration.labels(kind).observe(seconds);
        this.lastSwitch.set(e.time / 1000);
        if (e.type === 'rollback') this.rollbacks.labels(e.actor === 'cutover' ? 'automatic' : 'manual', 'completed').inc();
        break;
      }
      case 'switch.acknowledged':
      case 'switch.unacknowledged': {
        const ms = typeof e.data?.ms === 'number' ? e.data.ms : null;
        if (ms !== null) this.ackDuration.labels(e.type === 'switch.acknowledged' ? 'acknowledged' : 'unacknowledged').observe(ms / 1000);
        if (Array.isArray(e.data?.missing)) for (const id of e.data.missing) this.unacknowledged.labels(String(id)).inc();
        break;
      }
      case 'rollback.failed':
        this.rollbacks.labels('automatic', 'failed').inc();
        break;
      case 'drain':
        if (seconds !== null) this.drainDuration.labels(e.data?.completed === false ? 'timeout' : 'completed').observe(seconds);
        break;
      case 'gate': {
        const gate = gateName(e);
        const phase = e.phase === 'verify' ? 'verify' : 'gates';
        this.gateResults.labels(phase, gate, outcome).inc();
        if (seconds !== null) this.gateDuration.labels(phase, gate, outcome).observe(seconds);
        break;
      }
      default:
        break;
    }
    this.accountIdle();
  }

  /** Add the time since the last look to the idle environment's counter, then look again. */
  private accountIdle(status: Status = this.src.status()): void {
    const now = this.now();
    if (this.idle) this.idleSeconds.labels(this.idle.role).inc(Math.max(0, now - this.idle.since) / 1000);
    const liveColor = status.live?.color ?? null;
    const other = COLORS.map((c) => status.environments[c]).find((e) => e.color !== liveColor && e.instances.length > 0 && e.role !== 'live');
    this.idle = other ? { role: other.role, since: now } : null;
  }

  /** Set the state gauges from the controller's status. */
  private refresh(): void {
    const s = this.src.status();
    this.accountIdle(s);
    this.instances.reset();
    this.envInfo.reset();
    for (const c of COLORS) {
      const env = s.environments[c];
      const healthy = env.instances.filter((i) => i.healthy).length;
      this.instances.labels(c, 'healthy').set(healthy);
      this.instances.labels(c, 'unhealthy').set(env.instances.length - healthy);
      this.envInfo.labels(c, env.role, env.version ?? '').set(1);
    }
    this.liveInfo.reset();
    if (s.live) this.liveInfo.labels(s.live.color, s.live.version ?? '').set(1);
    this.deploymentInProgress.set(s.deployment ? 1 : 0);
    this.routeRevision.set(s.router.revision);
    this.routerRevision.reset();
    this.routerStale.reset();
    this.routerAck.reset();
    for (const r of s.routers ?? []) {
      this.routerRevision.labels(r.id).set(r.revision);
      this.routerStale.labels(r.id).set(r.stale ? 1 : 0);
      if (r.ackMs !== null) this.routerAck.labels(r.id).set(r.ackMs / 1000);
    }
    this.splitShare.reset();
    if (s.router.split) this.splitShare.labels(s.router.split.color).set(s.router.split.share);
  }

  /** The Prometheus text exposition (what GET /metrics serves). */
  async render(): Promise<{ contentType: string; body: string }> {
    this.refresh();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

function laneIndex(listener: ListenerName, color: Color): number {
  return (listener === 'live' ? 0 : 2) + (color === 'blue' ? 0 : 1);
}

function statusClassIndex(status: number): number {
  if (status < 200) return 0;
  if (status >= 500) return 4;
  return Math.floor(status / 100) - 1;
}

/** The gate a `gate` event is about: `data.gate`, else `data.name`. */
function gateName(e: EventRecord): string {
  const g = e.data?.gate ?? e.data?.name;
  return typeof g === 'string' && g !== '' ? g.slice(0, 64) : 'unnamed';
}

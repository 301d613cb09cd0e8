/**
 * The release report: service-level figures of the releases in a time window, computed from the
 * deployment history and the event log (so it works for any past window, not only the router's
 * last 15 minutes).
 *
 * Definitions (also in docs/observability.md):
 * - deployment success rate: succeeded / finished deployments.
 * - cutover success rate: of the deployments that switched live traffic, the share that was not
 *   rolled back afterwards (automatically, or by hand while it was live).
 * - time to switch: the switch event's duration (decision → route table in force).
 * - time live before rollback (`meanTimeToRollbackMs`): from a release's switch to the rollback
 *   that took it off live traffic (how long users were exposed to a bad release); the MTTR of releases.
 * - rollback duration (`rollbackMs`): the rollback itself, decision → previous release live.
 * - post-switch error rate against baseline: the `release.measured` figures (post-switch.ts),
 *   request-weighted over the releases.
 * - auth failures and session loss per colour: the `auth` figures of the release's analysis
 *   events (bake and gradual-switch steps): answers 401/403/419, and the share of requests with
 *   credentials that got one (SRE guide M8).
 *
 * Owns: arithmetic on records. Must never: read the store or the clock itself (inputs only).
 */
import type { DeploymentRecord, EventRecord } from '../store/types.ts';
import { MEASURED_EVENT, type WindowFigures } from './post-switch.ts';

export interface ReleaseRow {
  id: string;
  version: string;
  color: string;
  status: DeploymentRecord['status'];
  createdAt: number;
  finishedAt: number | null;
  switchMs: number | null;
  /** Live at some point (the switch happened). */
  switched: boolean;
  rolledBack: boolean;
  rollbackTrigger: 'automatic' | 'manual' | null;
  /** From the switch to the rollback being in force, ms. */
  timeToRollbackMs: number | null;
  postSwitch: (WindowFigures & { windowMs: number; baseline: WindowFigures | null }) | null;
  /** Per colour while the release was judged (its colour, and the old one); null without analysis figures. */
  auth: Record<string, SessionFigures> | null;
}

export interface SessionFigures {
  requests: number;
  withCredentials: number;
  authFailures: { 401: number; 403: number; 419: number };
  /** Auth failures among the requests with credentials / those requests. */
  sessionLossRate: number;
}

export interface Distribution { count: number; mean: number; p50: number; p95: number; max: number }

export interface ReleaseReport {
  since: number;
  until: number;
  deployments: { total: number; succeeded: number; failed: number; rolledBack: number; aborted: number; interrupted: number; inProgress: number };
  deploymentSuccessRate: number | null;
  cutovers: { switched: number; kept: number; rolledBack: number };
  cutoverSuccessRate: number | null;
  timeToSwitchMs: Distribution | null;
  rollbacks: { count: number; automatic: number; manual: number };
  meanTimeToRollbackMs: number | null;
  /** How long the rollbacks themselves took (the rollback event's duration). */
  rollbackMs: Distribution | null;
  postSwitch: { releases: number; requests: number; errorRate: number | null; baselineRequests: number; baselineErrorRate: number | null; worseThanBaseline: number } | null;
  /** Over the released colours of the releases with analysis figures (credential-weighted). */
  sessions: { releases: number; withCredentials: number; authFailures: number; sessionLossRate: number | null } | null;
  releases: ReleaseRow[];
}

/**
 * `deployments`: those created in [since, until). `events`: every event from the first of
 * those deployments on (rollbacks after a release finished carry no deployment id), in seq order.
 */
export function computeReport(deployments: readonly DeploymentRecord[], events: readonly EventRecord[], window: { since: number; until: number }): ReleaseReport {
  const inWindow = deployments.filter((d) => d.createdAt >= window.since && d.createdAt < window.until).sort((a, b) => a.createdAt - b.createdAt);
  const rows = new Map<string, ReleaseRow>(inWindow.map((d) => [d.id, {
    id: d.id, version: d.version, color: d.color, status: d.status, createdAt: d.createdAt, finishedAt: d.finishedAt,
    switchMs: d.switchMs, switched: d.switchMs !== null, rolledBack: false, rollbackTrigger: null, timeToRollbackMs: null, postSwitch: null, auth: null,
  }]));

  // Walk the log: which release holds live traffic since when, and what took it off.
  let live: { deployment: string; since: number } | null = null;
  let rollbacks = 0, automatic = 0, manual = 0;
  const rollbackDurations: number[] = [];
  for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
    if (e.type === 'switch') {
      live = e.deployment ? { deployment: e.deployment, since: e.time } : null;
      const row = e.deployment ? rows.get(e.deployment) : undefined;
      if (row) { row.switched = true; row.switchMs ??= e.durationMs; }
    } else if (e.type === 'rollback') {
      const target = e.deployment ?? live?.deployment ?? null;
      const row = target ? rows.get(target) : undefined;
      if (row && !row.rolledBack) {
        rollbacks++;
        if (e.durationMs !== null) rollbackDurations.push(e.durationMs);
        const trigger = e.actor === 'cutover' ? 'automatic' : 'manual';
        if (trigger === 'automatic') automatic++; else manual++;
        row.rolledBack = true;
        row.rollbackTrigger = trigger;
        if (live && live.deployment === target) row.timeToRollbackMs = Math.max(0, e.time - live.since);
      }
      live = null;
    } else if (e.type === 'failover') {
      live = null;
    } else if (e.type === 'analysis' && e.deployment && e.data?.auth !== null && typeof e.data?.auth === 'object') {
      const row = rows.get(e.deployment);
      if (row) addAuth(row, e.data.auth as Record<string, Partial<SessionFigures>>);
    } else if (e.type === MEASURED_EVENT && e.deployment) {
      const row = rows.get(e.deployment);
      const d = e.data as (WindowFigures & { windowMs: number; baseline: WindowFigures | null }) | null;
      if (row && d && typeof d.requests === 'number') {
        row.postSwitch = { requests: d.requests, errorRate: d.errorRate, p95Ms: d.p95Ms ?? null, windowMs: d.windowMs, baseline: d.baseline ?? null };
      }
    }
  }

  const list = [...rows.values()];
  const count = (s: DeploymentRecord['status']) => list.filter((r) => r.status === s).length;
  const finished = list.filter((r) => r.status !== 'running' && r.status !== 'awaiting-promotion');
  const succeeded = count('succeeded');
  const switched = list.filter((r) => r.switched);
  const rolledBack = switched.filter((r) => r.rolledBack).length;
  const ttr = list.map((r) => r.timeToRollbackMs).filter((x): x is number => x !== null);
  const measured = list.filter((r) => r.postSwitch !== null).map((r) => r.postSwitch!);
  const withBaseline = measured.filter((m) => m.baseline !== null && m.baseline.requests > 0);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const requests = sum(measured.map((m) => m.requests));
  const baselineRequests = sum(withBaseline.map((m) => m.baseline!.requests));

  return {
    since: window.since,
    until: window.until,
    deployments: {
      total: list.length, succeeded, failed: count('failed'), rolledBack: count('rolled-back'), aborted: count('aborted'),
      interrupted: count('interrupted'), inProgress: list.length - finished.length,
    },
    deploymentSuccessRate: finished.length > 0 ? succeeded / finished.length : null,
    cutovers: { switched: switched.length, kept: switched.length - rolledBack, rolledBack },
    cutoverSuccessRate: switched.length > 0 ? (switched.length - rolledBack) / switched.length : null,
    timeToSwitchMs: distribution(list.map((r) => r.switchMs).filter((x): x is number => x !== null)),
    rollbacks: { count: rollbacks, automatic, manual },
    meanTimeToRollbackMs: ttr.length > 0 ? sum(ttr) / ttr.length : null,
    rollbackMs: distribution(rollbackDurations),
    postSwitch: measured.length === 0 ? null : {
      releases: measured.length,
      requests,
      // Request-weighted: a release that saw 10 requests does not count as much as one that saw 10 000.
      errorRate: requests > 0 ? sum(measured.map((m) => m.errorRate * m.requests)) / requests : null,
      baselineRequests,
      baselineErrorRate: baselineRequests > 0 ? sum(withBaseline.map((m) => m.baseline!.errorRate * m.baseline!.requests)) / baselineRequests : null,
      worseThanBaseline: withBaseline.filter((m) => m.requests > 0 && m.errorRate > m.baseline!.errorRate).length,
    },
    sessions: sessionTotals(list),
    releases: list.reverse(),
  };
}

function addAuth(row: ReleaseRow, auth: Record<string, Partial<SessionFigures>>): void {
  row.auth ??= {};
  for (const [color, f] of Object.entries(auth)) {
    if (typeof f?.requests !== 'number' || typeof f.withCredentials !== 'number') continue;
    const t = (row.auth[color] ??= { requests: 0, withCredentials: 0, authFailures: { 401: 0, 403: 0, 419: 0 }, sessionLossRate: 0 });
    const lost = t.sessionLossRate * t.withCredentials + (f.sessionLossRate ?? 0) * f.withCredentials;
    t.requests += f.requests;
    t.withCredentials += f.withCredentials;
    for (const k of [401, 403, 419] as const) t.authFailures[k] += f.authFailures?.[k] ?? 0;
    t.sessionLossRate = t.withCredentials === 0 ? 0 : lost / t.withCredentials;
  }
}

function sessionTotals(list: readonly ReleaseRow[]): ReleaseReport['sessions'] {
  const own = list.map((r) => r.auth?.[r.color]).filter((x): x is SessionFigures => x !== undefined);
  if (own.length === 0) return null;
  const creds = own.reduce((a, f) => a + f.withCredentials, 0);
  const lost = own.reduce((a, f) => a + f.sessionLossRate * f.withCredentials, 0);
  return { releases: own.length, withCredentials: creds, authFailures: own.reduce((a, f) => a + f.authFailures[401] + f.authFailures[403] + f.authFailures[419], 0), sessionLossRate: creds === 0 ? null : lost / creds };
}

/** Nearest-rank percentiles. */
export function distribution(xs: number[]): Distribution | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const rank = (q: number) => s[Math.max(1, Math.ceil(q * s.length)) - 1];
  return { count: s.length, mean: s.reduce((a, b) => a + b, 0) / s.length, p50: rank(0.5), p95: rank(0.95), max: s[s.length - 1] };
}

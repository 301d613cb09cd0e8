/**
 * What the controller needs of a data plane, whichever form it takes: a router inside the
 * daemon (embedded), one router process on this machine (dataplane/child-router.ts), or a fleet
 * of routers behind etcd (fleet/fleet-data-plane.ts).
 *
 * `swap` publishes a table; `applied` settles when every router that counts has acknowledged the
 * revision or `ackTimeout` passed (then it names who did not). Publishing may fail (a fleet whose
 * store has no quorum): then it throws and no router saw the table.
 */
import type { Color } from '../environments/types.ts';
import type { RouteTable } from '../router/route-table.ts';

export interface DrainInfo { color: Color; durationMs: number; completed: boolean; closedRequests: number; closedWebSockets: number }

/** One router as the controller sees it (status `routers: [...]`, metrics, deploy output). */
export interface RouterInfo {
  id: string;
  /** Colour (and version) its live and preview listeners route to, from the revision it applied. */
  live: { color: Color; version: string } | null;
  preview: { color: Color; version: string } | null;
  /** Last revision it acknowledged. */
  revision: number;
  /** True when it cannot hear the control plane (serving its last table) or lags behind it. */
  stale: boolean;
  /** Last time it was heard from (epoch ms). */
  lastSeen: number | null;
  /** Time from publishing its current revision to its acknowledgement, ms (null before the first). */
  ackMs: number | null;
  pid?: number;
  version?: string;
}

export interface AckReport {
  revision: number;
  /** From publishing to the last acknowledgement that counted (or to the timeout), ms. */
  ms: number;
  acked: { id: string; ms: number }[];
  /** Routers that did not acknowledge within the timeout: the operator decides (docs/fleet.md). */
  missing: { id: string; revision: number; stale: boolean }[];
  /** Routers expected at publish time whose lease expired before they acknowledged: they left the set and are not waited for. */
  left?: string[];
}

export interface SwapResult {
  revision: number;
  drain: Promise<DrainInfo> | null;
  /** Absent: applied in this process at once (embedded router). */
  applied?: Promise<AckReport>;
}

export interface DataPlane {
  table(): RouteTable;
  swap(next: RouteTable): SwapResult | Promise<SwapResult>;
  addresses(): { live: { host: string; port: number }; preview: { host: string; port: number } | null };
  /** The routers behind this data plane; absent for the embedded router. */
  routers?(): RouterInfo[];
}

/**
 * What plugins (gates, analysis, telemetry) read of the data plane: request statistics relayed
 * from wherever the routers run, requests in flight, the table, the addresses. Read-only.
 */
export interface RouterView {
  readonly stats: import('../router/request-stats.ts').RequestStats;
  inFlight(listener: import('../router/request-stats.ts').ListenerName, color?: Color): number;
  table(): RouteTable;
  addresses(): { live: { host: string; port: number }; preview: { host: string; port: number } | null };
}

/**
 * The data plane's contract with the rest of Cutover: what anyone may READ of a router
 * (`RouterView`), and the one extra call the controller gets (`DataPlane.swap`).
 *
 * "Only the controller moves traffic" is a type rule here: plugins, the API and telemetry are
 * handed a `RouterView`, which has no `swap`; the controller alone is built with a `DataPlane`.
 *
 * The contract is written so that more than the in-process `Router` can stand behind it: a
 * router child process, a set of worker threads on one port, HAProxy driven over its runtime
 * API, or a fleet of routers fed through etcd. That is why `swap` answers with promises: the
 * drain of the colour that left the live listener, and the moment every router has the new
 * table (`applied`). In-process both are known at once. Owns only types; never behaviour.
 */
import type { Color } from '../environments/types.ts';
import type { HostPort } from '../lib/address.ts';
import type { RouteTable } from './route-table.ts';
import type { MirrorReport } from './mirror-diff.ts';
import type { ListenerName, ProxyErrorKind, StatsPoint, StatsSummary } from './request-stats.ts';

/** One finished proxied request, as request observers (metrics, analysis) receive it. */
export interface RequestRecord {
  listener: ListenerName;
  color: Color;
  version: string;
  method: string;
  status: number;
  durationMs: number;
  error?: ProxyErrorKind;
  /** When it finished (epoch ms), on records relayed from a router process; absent = just now. */
  at?: number;
  /** The request carried credentials (a Cookie or Authorization header): for session-loss figures. */
  credentials?: boolean;
  /** Only for live requests the capture chose (`RouterView.setCapture`). */
  request?: CapturedRequest;
  /**
   * How many requests of its kind this record stands for: a data plane that samples (the HAProxy
   * engine logs 1 request in N while nobody holds `everyRequest`) sends N; absent = 1. Counters
   * add it; per-request judges (analysis) hold `everyRequest` and see 1.
   */
  weight?: number;
}

/**
 * A narrow, bounded copy of chosen live requests for the request hook (the traffic sample of the
 * compatibility run). `wants` is asked once per live request and must be cheap; at most
 * `maxBodyBytes` of a body are kept (a longer one is marked truncated, never buffered whole).
 */
export interface RequestCapture {
  wants(method: string, path: string): boolean;
  readonly maxBodyBytes: number;
}

/** What a capture copied of one request: raw header pairs as received, the body (or its prefix). */
export interface CapturedRequest {
  path: string;
  rawHeaders: string[];
  body: Buffer | null;
  /** The body was longer than the capture's limit: `body` holds only its start. */
  truncated: boolean;
}


/** How the drain of the colour that left the live listener ended. */
export interface DrainReport {
  color: Color;
  revision: number;
  durationMs: number;
  /** false = hit drainTimeout and what remained was closed. */
  completed: boolean;
  closedRequests: number;
  closedWebSockets: number;
}

/** Which routers serve a revision: all of them once `missing` is empty. */
export interface ApplyReport {
  revision: number;
  /** Router ids that serve `revision` (in-process: the one router). */
  acknowledged: readonly string[];
  /** Router ids that did not acknowledge in time (a fleet with a router away); empty in-process. */
  missing: readonly string[];
  /** From publishing to the last acknowledgement (or to the timeout when some are missing), ms; 0 in-process. */
  ms?: number;
  /** Per router: publish to its acknowledgement, ms. */
  ackMs?: Readonly<Record<string, number>>;
  /** Expected routers whose lease expired before they acknowledged: they left the set and are not waited for. */
  left?: readonly string[];
}

/** One router as the controller sees it (status `routers: [...]`, metrics, deploy output). */
export interface RouterInfo {
  id: string;
  /** Colour and version its listeners route to, per the revision it acknowledged (null: unknown or none). */
  live: { color: Color; version: string } | null;
  preview: { color: Color; version: string } | null;
  /** Last revision it acknowledged. */
  revision: number;
  /** It serves an older revision than the controller's current one (cut off, or lagging). */
  stale: boolean;
  /** When the controller last heard from it (epoch ms). */
  lastSeen: number | null;
  /** Publish-to-acknowledgement time of its latest revision, ms (null before the first). */
  ackMs: number | null;
  pid?: number;
  version?: string;
}

export interface SwapResult {
  revision: number;
  /** The drain of the colour that left the live listener; null when the live colour did not change. */
  drain: Promise<DrainReport> | null;
  /** Settles when every router serves `revision`. In-process it is already settled. */
  applied: Promise<ApplyReport>;
}

/** Per-colour request statistics, read side only (the router alone records). */
export interface StatsReader {
  query(listener: ListenerName, color: Color, fromMs: number, toMs: number): StatsSummary;
  series(listener: ListenerName, color: Color, fromMs: number, toMs: number, stepMs: number): StatsPoint[];
}

export interface ListenerAddresses { live: HostPort; preview: HostPort | null }

/** What plugins, the API and telemetry may read of the data plane. No method here changes traffic. */
export interface RouterView {
  readonly stats: StatsReader;
  /** Bound listener addresses (the configured ones before start). */
  addresses(): ListenerAddresses;
  /** The route table in force. */
  table(): RouteTable;
  /** Requests plus WebSockets in flight on a listener (optionally only those bound to `color`). */
  inFlight(listener: ListenerName, color?: Color): number;
  /** Requests refused before reaching any colour, by HTTP status. */
  rejections(): Record<string, number>;
  /**
   * Counts of a mirroring run (the route table's `mirror.id`), or null when unknown or when the
   * engine cannot mirror. A plain object: it may cross a process boundary.
   */
  mirrorReport(id: string): MirrorReport | null;
  /**
   * Copy chosen live requests (head, bounded body prefix) into their request record, or stop
   * (null): the traffic sample of the compatibility run. Changes no traffic. Optional: a data
   * plane that cannot copy requests leaves it out, and nothing is sampled.
   */
  setCapture?(capture: RequestCapture | null): void;
  /**
   * Every request reaches the request hook (weight 1) from when the promise resolves until the
   * returned release is called: for judges that count requests one by one (post-switch
   * analysis). Optional: a data plane that always reports every request leaves it out.
   */
  everyRequest?(): Promise<() => void>;
}

/** The controller's handle on the data plane: read everything, and swap the route table. */
export interface DataPlane extends RouterView {
  /**
   * Requests arriving from now on use `next`; requests in flight finish under the table they
   * arrived with (DESIGN promise 1). One call per switch (promise 3).
   *
   * May be asynchronous: a fleet first commits the table to etcd, and throws (nothing published,
   * no router saw it) when it cannot; the controller then undoes the state it wrote ahead.
   */
  swap(next: RouteTable): SwapResult | Promise<SwapResult>;
  /** The routers behind this data plane, each with the revision it acknowledged; absent in-process. */
  routers?(): RouterInfo[];
}

/**
 * What the daemon runs: a data plane it can start, point at new certificates and stop. The
 * in-process `Router` is one; a router child process, worker threads or HAProxy would be others.
 */
export interface DataPlaneEngine extends DataPlane {
  /** Bind the listeners; resolves once they accept connections. */
  start(): Promise<void>;
  /** Re-read the live listener's certificate for new handshakes; false when TLS is off. Throws on a bad pair. */
  reloadTls(): boolean;
  /** Stop listening and close every connection. */
  close(): Promise<void>;
}

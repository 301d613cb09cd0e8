/**
 * The route table: which colour each listener sends traffic to, and that colour's targets.
 * Immutable snapshots. Only the controller builds and swaps them; the router only reads them.
 * A request captures the snapshot it arrived under and finishes there (DESIGN promise 1).
 *
 * Everything here is plain data (it may cross a process boundary or sit in etcd): a gradual
 * switch is a `split` (a share of new visitors to another colour, and how a visitor keeps its
 * colour), mirroring is a `mirror` spec. The router decides per request from these values alone.
 */
import type { Color } from '../environments/types.ts';
import type { Stickiness } from '../config/switch.ts';

export type { Stickiness };

export interface RouteTarget {
  /** Instance id (`blue-0`), the key for health and per-target pools. */
  id: string;
  host: string;
  port: number;
}

export interface ColorRoute {
  color: Color;
  version: string;
  targets: readonly RouteTarget[];
}

/**
 * A visitor's hash h ∈ [0, 1) (of its cookie or header, see split.ts) sends it to the split colour
 * when h < share, so as the share grows a visitor already on the new colour stays there.
 */

export interface LiveSplit {
  /** The colour taking `share` of live traffic (the candidate during a gradual switch). */
  route: ColorRoute;
  /** Share of visitors (or requests) sent to `route`, 0..1. */
  share: number;
  stickiness: Stickiness;
}

/** Copy a sample of live requests to the preview colour and to the live colour a second time. */
export interface MirrorSpec {
  /** One mirroring run (a gate); results are counted under it. */
  id: string;
  /** Share of eligible live requests copied, 0..1. */
  sample: number;
  /** Upper-case methods that are mirrored (others never are). */
  methods: readonly string[];
  /** Request and response bodies above this many bytes are not compared (the request is skipped). */
  maxBodyBytes: number;
  /** Response headers compared (lower-case). */
  headers: readonly string[];
  /** Field paths never compared (`body.id`, `headers.date`, `body.items[].ts`). */
  ignore: readonly string[];
  /** Captures waiting for their copies; beyond this they are dropped and counted. */
  queue: number;
  /** Mirrored request pairs in flight at most. */
  concurrency: number;
  /** Per mirrored request. */
  timeoutMs: number;
  /** Only requests carrying credentials (Cookie or Authorization) are picked: the session gate's live replay. */
  credentialsOnly?: boolean;
}

export interface RouteTable {
  /** Increases by one on every swap; lets routers (and later a fleet) acknowledge revisions. */
  readonly revision: number;
  /** Where `router.listen` sends traffic; null only before the first release. */
  readonly live: ColorRoute | null;
  /** Where `router.preview` sends traffic (candidate, else standby); null when none. */
  readonly preview: ColorRoute | null;
  /** A gradual switch in progress: part of the live listener's traffic goes to another colour. */
  readonly split?: LiveSplit | null;
  /** Mirroring of live requests to `preview` (a mirror gate running). */
  readonly mirror?: MirrorSpec | null;
}

export const EMPTY_ROUTE_TABLE: RouteTable = Object.freeze({ revision: 0, live: null, preview: null });

export function freezeTable(t: RouteTable): RouteTable {
  const freezeRoute = (r: ColorRoute | null) =>
    r === null ? null : Object.freeze({ ...r, targets: Object.freeze(r.targets.map((x) => Object.freeze({ ...x }))) });
  const split = t.split ? Object.freeze({ route: freezeRoute(t.split.route) as ColorRoute, share: t.split.share, stickiness: Object.freeze({ ...t.split.stickiness }) }) : null;
  const mirror = t.mirror ? Object.freeze({ ...t.mirror, methods: Object.freeze([...t.mirror.methods]), headers: Object.freeze([...t.mirror.headers]), ignore: Object.freeze([...t.mirror.ignore]) }) : null;
  return Object.freeze({ revision: t.revision, live: freezeRoute(t.live), preview: freezeRoute(t.preview), split, mirror });
}

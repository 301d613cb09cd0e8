/**
 * The route table: which colour each listener sends traffic to, and that colour's targets.
 * Immutable snapshots. Only the controller builds and swaps them; the router only reads them.
 * A request captures the snapshot it arrived under and finishes there (DESIGN promise 1).
 */
import type { Color } from '../environments/types.ts';

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

export interface RouteTable {
  /** Increases by one on every swap; lets routers (and later a fleet) acknowledge revisions. */
  readonly revision: number;
  /** Where `router.listen` sends traffic; null only before the first release. */
  readonly live: ColorRoute | null;
  /** Where `router.preview` sends traffic (candidate, else standby); null when none. */
  readonly preview: ColorRoute | null;
}

export const EMPTY_ROUTE_TABLE: RouteTable = Object.freeze({ revision: 0, live: null, preview: null });

export function freezeTable(t: RouteTable): RouteTable {
  const freezeRoute = (r: ColorRoute | null) =>
    r === null ? null : Object.freeze({ ...r, targets: Object.freeze(r.targets.map((x) => Object.freeze({ ...x }))) });
  return Object.freeze({ revision: t.revision, live: freezeRoute(t.live), preview: freezeRoute(t.preview) });
}

/**
 * Where traffic should go, derived from state alone: a pure function from the colours' roles
 * and instances to a route table. The controller calls it for every traffic move and swaps
 * the result; nothing here reads the clock, the store or the network.
 *
 * live listener    → the colour whose role is `live` (none before the first release)
 * preview listener → the `candidate` (a release being validated), else the warm `standby`,
 *                    else nothing (a `retired` or `empty` colour is never routed to)
 * split            → during a gradual switch, `share` of live traffic to the candidate (only while
 *                    there is a live colour and the split colour is the candidate)
 * mirror           → copies of live requests to the candidate (a mirror gate), same condition
 */
import { COLORS, type Color, type Instance } from '../environments/types.ts';
import type { ColorRoute, MirrorSpec, RouteTable, Stickiness } from '../router/route-table.ts';

/** What the controller asks of traffic beyond the roles: a gradual switch's share, mirroring. */
export interface TrafficPlan {
  split?: { color: Color; share: number; stickiness: Stickiness } | null;
  mirror?: MirrorSpec | null;
}
import type { EnvironmentState } from '../store/types.ts';

export function deriveRouteTable(
  envs: Readonly<Record<Color, Pick<EnvironmentState, 'role' | 'version'>>>,
  instancesOf: (c: Color) => readonly Pick<Instance, 'id' | 'host' | 'port'>[],
  revision: number,
  plan: TrafficPlan = {},
): RouteTable {
  const route = (c: Color | undefined): ColorRoute | null => c === undefined ? null : {
    color: c, version: envs[c].version ?? '',
    targets: instancesOf(c).map((i) => ({ id: i.id, host: i.host, port: i.port })),
  };
  const live = COLORS.find((c) => envs[c].role === 'live');
  const candidate = COLORS.find((c) => envs[c].role === 'candidate');
  const preview = candidate ?? COLORS.find((c) => envs[c].role === 'standby');
  const sp = plan.split ?? null;
  const split = sp !== null && sp.share > 0 && sp.color === candidate && live !== undefined ? { route: route(sp.color) as ColorRoute, share: sp.share, stickiness: sp.stickiness } : null;
  const mirror = plan.mirror && candidate !== undefined && live !== undefined ? plan.mirror : null;
  // Keys only when in force: the common table stays { revision, live, preview }.
  return { revision, live: route(live), preview: route(preview), ...(split !== null ? { split } : {}), ...(mirror !== null ? { mirror } : {}) };
}

/** Whether two tables send every listener to the same colour, version and targets (revisions aside). */
export function sameRoutes(a: RouteTable, b: RouteTable): boolean {
  const same = (x: ColorRoute | null, y: ColorRoute | null) => x === y || (x !== null && y !== null && x.color === y.color && x.version === y.version
    && x.targets.length === y.targets.length && x.targets.every((t, i) => t.id === y.targets[i].id && t.host === y.targets[i].host && t.port === y.targets[i].port));
  const sa = a.split ?? null;
  const sb = b.split ?? null;
  const sameSplit = sa === sb || (sa !== null && sb !== null && sa.share === sb.share && JSON.stringify(sa.stickiness) === JSON.stringify(sb.stickiness) && same(sa.route, sb.route));
  return same(a.live, b.live) && same(a.preview, b.preview) && sameSplit && (a.mirror?.id ?? null) === (b.mirror?.id ?? null);
}

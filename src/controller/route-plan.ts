/**
 * Where traffic should go, derived from state alone: a pure function from the colours' roles
 * and instances to a route table. The controller calls it for every traffic move and swaps
 * the result; nothing here reads the clock, the store or the network.
 *
 * live listener    → the colour whose role is `live` (none before the first release)
 * preview listener → the `candidate` (a release being validated), else the warm `standby`,
 *                    else nothing (a `retired` or `empty` colour is never routed to)
 */
import { COLORS, type Color, type Instance } from '../environments/types.ts';
import type { ColorRoute, RouteTable } from '../router/route-table.ts';
import type { EnvironmentState } from '../store/types.ts';

export function deriveRouteTable(
  envs: Readonly<Record<Color, Pick<EnvironmentState, 'role' | 'version'>>>,
  instancesOf: (c: Color) => readonly Pick<Instance, 'id' | 'host' | 'port'>[],
  revision: number,
): RouteTable {
  const route = (c: Color | undefined): ColorRoute | null => c === undefined ? null : {
    color: c, version: envs[c].version ?? '',
    targets: instancesOf(c).map((i) => ({ id: i.id, host: i.host, port: i.port })),
  };
  const live = COLORS.find((c) => envs[c].role === 'live');
  const preview = COLORS.find((c) => envs[c].role === 'candidate') ?? COLORS.find((c) => envs[c].role === 'standby');
  return { revision, live: route(live), preview: route(preview) };
}

/** Whether two tables send every listener to the same colour, version and targets (revisions aside). */
export function sameRoutes(a: RouteTable, b: RouteTable): boolean {
  const same = (x: ColorRoute | null, y: ColorRoute | null) => x === y || (x !== null && y !== null && x.color === y.color && x.version === y.version
    && x.targets.length === y.targets.length && x.targets.every((t, i) => t.id === y.targets[i].id && t.host === y.targets[i].host && t.port === y.targets[i].port));
  return same(a.live, b.live) && same(a.preview, b.preview);
}

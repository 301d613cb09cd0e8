/**
 * Several controllers of one fleet (issue 11; docs/fleet.md): what `cutover up` with `fleet:`
 * does around the one Controller — join the election, follow the leader's state while following,
 * take over when elected, step down for good when deposed.
 *
 * Take-over, in order: stop following; read the whole state and the route table again; make the
 * roles agree with the route table (the table is the truth of traffic); publish the table the
 * state describes (the routers keep serving meanwhile); then the crash recovery of one machine,
 * which ends a deployment the previous leader left running — the reason names both controllers
 * and the phase — and adopts the live and standby instances.
 *
 * Owns: the order of take-over and the admin token's hash in etcd. Must never: let a follower or
 * a deposed leader write, or answer writes before the take-over is done.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { DeploymentRecord, EventRecord } from '../store/types.ts';
import type { Etcd3 } from 'etcd3';
import { COLORS } from '../environments/types.ts';
import { CutoverError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { FleetDataPlane } from '../fleet/fleet-data-plane.ts';
import type { FleetKeys } from '../fleet/keys.ts';
import { fleetUnavailable } from '../fleet/etcd.ts';
import type { Leadership, LeaderInfo } from '../fleet/leadership.ts';
import type { EtcdStore } from '../store/etcd-store.ts';
import type { Controller } from '../controller/controller.ts';
import type { HealthMonitor } from '../health/types.ts';

export interface FleetControllerParts {
  id: string;
  leadership: Leadership;
  store: EtcdStore;
  fleet: FleetDataPlane;
  controller: Controller;
  /** The controller's health checker: a follower checks the recorded instances too, so its status tells their health. */
  health: HealthMonitor;
  logger: Logger;
  /** Called once when this controller stepped down for good (the daemon stops it; `cutover up` exits). */
  onDeposed: (why: string) => void;
  /** It stopped leading because etcd does not answer: it serves reads until etcd is back, then onDeposed. */
  onUnreachable?: (why: string) => void;
}

export class FleetControllers {
  /** What the leader wrote, as a follower hears it (the admin API's event stream). */
  readonly followed = new EventEmitter<{ event: [EventRecord]; deployment: [DeploymentRecord] }>();
  readonly #p: FleetControllerParts;
  #ready = false;
  #takeover: Promise<void> | null = null;
  /** Instances a follower health-checks (those the state records); handed to the controller at take-over. */
  readonly #watched = new Set<string>();

  constructor(parts: FleetControllerParts) {
    this.#p = parts;
  }

  /** Leading and taken over: this controller answers writes itself. */
  acceptsWrites(): boolean {
    return this.#ready && this.#p.leadership.isLeader();
  }

  /** Where the admin API sends a write: null = here; else the leader's admin URL (null url: none known). */
  forwardTarget(): { self: true } | { self: false; url: string | null; why: string } {
    const l = this.#p.leadership;
    if (this.acceptsWrites()) return { self: true };
    if (l.isLeader()) return { self: false, url: null, why: `controller ${this.#p.id} was just elected and is taking over; try again in a moment` };
    const leader = l.leader();
    if (leader && leader.id !== this.#p.id && l.deposedBecause() === null) return { self: false, url: leader.admin, why: '' };
    return { self: false, url: null, why: l.deposedBecause() ? `controller ${this.#p.id} stepped down (${l.deposedBecause()})` : 'no controller leads right now (an election is under way); try again in a moment' };
  }

  /** Resolves when this controller leads and has taken over, or after `ms` (false). A write that reaches a new leader mid take-over waits for it. */
  async settled(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (this.acceptsWrites()) return true;
      if (!this.#p.leadership.isLeader() && this.#p.leadership.leader()?.id !== this.#p.id && this.#p.leadership.leader() !== null) return false;
      await new Promise((r) => setTimeout(r, 25));
    }
    return this.acceptsWrites();
  }

  /** Join the election; lead at once when nobody does, else follow. */
  async start(): Promise<void> {
    const { leadership, store, controller, logger } = this.#p;
    leadership.on('deposed', (why, unreachable) => {
      this.#ready = false;
      if (!unreachable) { this.#p.onDeposed(why); return; }
      // etcd does not answer: stop leading at once (the controller is stopped), but keep answering
      // reads from the last state until etcd is back — then step down for good (a restart follows or leads).
      this.#p.onUnreachable?.(why);
      const probe = setInterval(() => {
        void leadership.reachable().then((ok) => { if (ok) { clearInterval(probe); this.#p.onDeposed(why); } });
      }, 500);
      probe.unref();
    });
    leadership.on('elected', (previous) => {
      this.#takeover ??= this.#takeOver(previous).catch((err: unknown) => {
        logger.error({ err }, 'take-over failed: stepping down');
        this.#p.onDeposed(`the take-over failed: ${(err as Error).message}`);
      });
    });
    // Followers: the leader's events and deployments reach this controller's event stream (the
    // admin API's), not its plugins: a follower's webhooks and meters must not act on them twice.
    store.onFollowed = {
      event: (e) => this.followed.emit('event', e),
      deployment: (d) => this.followed.emit('deployment', d),
      instances: () => this.#syncHealth(),
    };
    const rev = await store.load();
    this.#syncHealth();
    await store.follow(rev);
    await leadership.start();
    if (this.#takeover) await this.#takeover;
    else logger.info({ leader: leadership.leader()?.id ?? null }, `controller ${this.#p.id} follows`);
  }

  /** A follower: check what the state records (as the routers do), so its `status` shows real health. */
  #syncHealth(): void {
    if (this.#takeover) return; // leading: the controller owns its health watches
    const { store, health } = this.#p;
    const now = new Set<string>();
    for (const c of COLORS) {
      for (const i of store.instances(c)) {
        now.add(i.id);
        if (!this.#watched.has(i.id)) health.watch(i, { assumeHealthy: true });
      }
    }
    for (const id of this.#watched) if (!now.has(id)) health.unwatch(id);
    this.#watched.clear();
    for (const id of now) this.#watched.add(id);
  }

  async #takeOver(previous: LeaderInfo | null): Promise<void> {
    const { id, store, fleet, controller, logger, leadership } = this.#p;
    const t0 = Date.now();
    await store.unfollow();
    await store.load();
    await fleet.resync();
    // The route table is the truth of traffic: roles that disagree with it are put right first.
    const table = fleet.table();
    const envs = store.environments();
    const storedLive = COLORS.find((c) => envs[c].role === 'live') ?? null;
    const tableLive = table.live?.color ?? null;
    if (tableLive !== null && storedLive !== tableLive) {
      const now = Date.now();
      const other = COLORS.find((c) => c !== tableLive)!;
      store.commit({
        environments: [
          { ...envs[tableLive], role: 'live', version: table.live?.version ?? envs[tableLive].version, since: now, retireAt: null },
          ...(envs[other].role === 'live' ? [{ ...envs[other], role: 'standby' as const, since: now, retireAt: null }] : []),
        ],
        events: [{ type: 'state.reconciled', actor: 'cutover', color: tableLive, version: table.live?.version ?? null, reason: `controller ${id} found the route table (revision ${table.revision}) sending live traffic to ${tableLive} while the state said ${storedLive ?? 'nothing'}: the state follows the table` }],
      });
    }
    const from = previous && previous.id !== id ? previous.id : null;
    const active = store.activeDeployment();
    store.commit({ events: [{ type: 'leader.elected', actor: 'cutover', deployment: active?.id ?? null, reason: `controller ${id} leads the fleet${from ? ` (after ${from})` : ''}${active ? `; deployment ${active.id} of ${active.version} was in ${active.phase}` : ''}`, data: { id, previous: from, admin: leadership.leader()?.admin ?? null } }] });
    const restored = await controller.restoreRoutes();
    await restored.applied;
    await controller.recover({ takeover: { from, by: id } });
    await store.flush();
    this.#ready = true;
    logger.info({ ms: Date.now() - t0, previous: from }, `controller ${id} took over`);
  }
}

/**
 * The admin token in fleet mode: its SHA-256 in etcd (created by the first controller from its own
 * token), so that every controller accepts the same token and no controller stores it in etcd.
 * Returns the check the admin API uses, and a warning when this controller's own token differs.
 */
export async function fleetTokenCheck(client: Etcd3, keys: FleetKeys, token: string, endpoints: readonly string[]): Promise<{ matches: (given: string) => boolean; warning: string | null }> {
  const mine = createHash('sha256').update(token).digest('hex');
  let stored: string;
  try {
    const r = await client.if(keys.tokenHash, 'Create', '==', 0).then(client.put(keys.tokenHash).value(JSON.stringify({ sha256: mine }))).else(client.get(keys.tokenHash)).commit();
    const text = r.succeeded ? null : r.responses[0]?.response_range?.kvs?.[0]?.value?.toString();
    stored = text ? String((JSON.parse(text) as { sha256?: unknown }).sha256) : mine;
  } catch (err) {
    throw fleetUnavailable('cannot read the admin token hash', err, endpoints);
  }
  if (!/^[0-9a-f]{64}$/.test(stored)) throw new CutoverError('CUTOVER_ERR_CONFIG', `${keys.tokenHash} in etcd does not hold a SHA-256 hex digest: delete it (the next controller writes its own token's)`);
  const expected = Buffer.from(stored, 'hex');
  return {
    matches: (given) => timingSafeEqual(createHash('sha256').update(given).digest(), expected),
    warning: stored === mine ? null : `this controller's admin token differs from the fleet's (${keys.tokenHash} in etcd, set by the first controller): it accepts only the fleet's token; set CUTOVER_TOKEN to it here`,
  };
}

/**
 * Several controllers, one leader (issue 11): an election in etcd and the fence every write of
 * the leader carries.
 *
 * Each controller holds one lease (fleet.leaseTtl) and registers `<app>/controllers/<id>` under
 * it. The leader is whoever created `<app>/leader` (a txn: create it only if it does not exist,
 * under its lease). The key's *create revision* is the fencing token: every route-table and
 * state write of the leader is one transaction comparing `Create(leader) == myCreateRevision`,
 * so a controller that lost the key (paused with SIGSTOP, cut off, slow) writes nothing once
 * another created it again — whatever it believes (microsoft/etcd3#176: two leaders).
 *
 * A lost lease is noticed promptly, not after 2 × TTL as the etcd3 client does on a network cut
 * (microsoft/etcd3#110): a local check steps down when no keepalive succeeded within 0.8 × TTL,
 * and the watch on the leader key steps down when it changes hands. Stepping down is final for
 * this process (`deposed`): the daemon stops its controller and exits so that a supervisor
 * starts it again as a follower — as kube-controller-manager does when it loses its lease.
 *
 * Owns: the lease, the registration, the campaign and the fence. Must never: report leadership
 * it cannot prove, or write anything with a stale fence.
 */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import type { ComparatorBuilder, Etcd3, IKeyValue, Lease, Watcher } from 'etcd3';
import { CutoverError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { fleetUnavailable, ttlSeconds } from './etcd.ts';
import type { FleetKeys } from './keys.ts';

/** What the leader key says. */
export interface LeaderInfo {
  id: string;
  /** Its admin API, where followers forward writes (http(s)://host:port). */
  admin: string;
  host: string;
  pid: number;
  /** When it took the lead (epoch ms, its clock). */
  since: number;
}

/** A controller's registration. */
export interface ControllerInfo {
  id: string;
  admin: string;
  host: string;
  pid: number;
  startedAt: number;
}

/** A leader steps down when no keepalive succeeded for this share of the TTL. */
const KEEPALIVE_MARGIN = 0.8;
/** The local lease check runs this often: 100 ms. */
const CHECK_EVERY_MS = 100;

export interface LeadershipEvents {
  /** This controller now leads; `previous` is the last leader it knew (null: none seen). */
  elected: [previous: LeaderInfo | null];
  /** This controller lost the lead (or its lease): final. `unreachable`: because etcd did not answer (no proof either way). */
  deposed: [why: string, unreachable: boolean];
  /** The leader changed (any controller's view). */
  leader: [info: LeaderInfo | null];
}

export class Leadership extends EventEmitter<LeadershipEvents> {
  readonly id: string;
  readonly #client: Etcd3;
  readonly #keys: FleetKeys;
  readonly #ttlMs: number;
  readonly #log: Logger;
  readonly #endpoints: readonly string[];
  readonly #me: ControllerInfo;
  #lease: Lease | null = null;
  #lastKeepalive = 0;
  #createRevision: string | null = null;
  #deposed: string | null = null;
  #leader: LeaderInfo | null = null;
  #lastLeader: LeaderInfo | null = null;
  readonly #controllers = new Map<string, ControllerInfo>();
  #watchers: Watcher[] = [];
  #check: NodeJS.Timeout | null = null;
  #closed = false;
  #campaigning: Promise<void> | null = null;

  constructor(o: { client: Etcd3; keys: FleetKeys; id: string; admin: string; leaseTtlMs: number; logger: Logger; endpoints: readonly string[] }) {
    super();
    this.id = o.id;
    this.#client = o.client;
    this.#keys = o.keys;
    this.#ttlMs = ttlSeconds(o.leaseTtlMs) * 1_000;
    this.#log = o.logger.child({ component: 'leadership', controller: o.id });
    this.#endpoints = o.endpoints;
    this.#me = { id: o.id, admin: o.admin, host: os.hostname(), pid: process.pid, startedAt: Date.now() };
  }

  /** The leader key as written by this controller's campaign, or the last one seen. */
  leader(): LeaderInfo | null {
    return this.#leader;
  }

  /** Every controller registered (its lease alive), this one included. */
  controllers(): (ControllerInfo & { leader: boolean })[] {
    return [...this.#controllers.values()].map((c) => ({ ...c, leader: this.#leader?.id === c.id })).sort((a, b) => a.id.localeCompare(b.id));
  }

  /** True while this controller holds the leader key and its lease is fresh. */
  isLeader(): boolean {
    return this.#createRevision !== null && this.#deposed === null && Date.now() - this.#lastKeepalive < this.#ttlMs * KEEPALIVE_MARGIN;
  }

  /** Why it stepped down, or null. */
  deposedBecause(): string | null {
    return this.#deposed;
  }

  /**
   * The fence: `[key, 'Create', '==', revision]`, to add to a transaction with `.and(...)`
   * (or start one with `client.if(...)`). Throws CUTOVER_ERR_NOT_LEADER when this controller does not lead.
   */
  compares(): [key: string, column: 'Create', cmp: '==', value: string][] {
    this.assertLeader();
    return [[this.#keys.leader, 'Create', '==', this.#createRevision!]];
  }

  /** A transaction that commits only while this controller still holds the leader key. */
  txn(): ComparatorBuilder {
    const [[k, col, cmp, v]] = this.compares();
    return this.#client.if(k, col, cmp, v);
  }

  /**
   * A fenced transaction failed its compare: find out whether the fence is what failed (the leader
   * key changed hands) and, if so, step down. Returns true when this controller no longer leads.
   */
  async checkFence(): Promise<boolean> {
    if (this.#createRevision === null) return true;
    try {
      const res = await this.#client.get(this.#keys.leader).exec();
      const kv = res.kvs[0];
      if (!kv || kv.create_revision !== this.#createRevision) {
        this.#stepDown(`the leader key changed hands (now ${kv ? describe(parse(kv)) : 'nobody'}): a fenced write was refused by etcd`);
        return true;
      }
      return false;
    } catch {
      return !this.isLeader();
    }
  }

  assertLeader(): void {
    if (this.isLeader()) return;
    const l = this.#leader && this.#leader.id !== this.id ? this.#leader : null;
    const why = this.#deposed ? ` (it stepped down: ${this.#deposed})` : '';
    throw new CutoverError('CUTOVER_ERR_NOT_LEADER', `controller ${this.id} does not lead the fleet${why}; ${l ? `the leader is ${l.id} at ${l.admin}` : 'no leader is known right now (an election is under way)'}`, { details: { controller: this.id, leader: l ? { id: l.id, admin: l.admin } : null } });
  }

  /** Grant the lease, register, learn the controllers and the leader, and campaign once. */
  async start(): Promise<void> {
    try {
      const lease = this.#client.lease(this.#ttlMs / 1_000, { autoKeepAlive: true });
      lease.on('lost', (err) => this.#stepDown(`its lease was lost: ${err.message}`, true));
      lease.on('keepaliveSucceeded', () => { this.#lastKeepalive = Date.now(); });
      const asked = Date.now();
      await lease.grant();
      this.#lastKeepalive = asked;
      this.#lease = lease;
      await lease.put(this.#keys.controller(this.id)).value(JSON.stringify(this.#me)).exec();
      const [ctl, led] = await Promise.all([
        this.#client.getAll().prefix(this.#keys.controllersPrefix).exec(),
        this.#client.get(this.#keys.leader).exec(),
      ]);
      for (const kv of ctl.kvs) this.#onController(kv);
      const held = led.kvs[0];
      if (held) {
        const info = parse(held);
        if (info.id === this.id && info.host === this.#me.host && info.pid !== process.pid && !alive(info.pid)) {
          // This controller's previous process (kill -9, crash) still holds the key until its lease
          // runs out; it is dead on this very host, so its lease is revoked now instead of waited for.
          this.#log.warn({ pid: info.pid, lease: held.lease }, 'the leader key is held by a dead earlier process of this controller: revoking its lease');
          await this.#client.leaseClient.leaseRevoke({ ID: held.lease }).catch(() => {});
        } else this.#setLeader(info);
      }
      const from = String(Math.max(Number(ctl.header.revision), Number(led.header.revision)) + 1);
      const wc = await this.#client.watch().prefix(this.#keys.controllersPrefix).startRevision(from).create();
      wc.on('put', (kv) => this.#onController(kv));
      wc.on('delete', (kv) => { this.#controllers.delete(kv.key.toString().slice(this.#keys.controllersPrefix.length)); });
      const wl = await this.#client.watch().key(this.#keys.leader).startRevision(from).create();
      wl.on('put', (kv) => this.#onLeaderPut(kv));
      wl.on('delete', (kv) => this.#onLeaderDelete(kv));
      this.#watchers = [wc, wl];
    } catch (err) {
      throw fleetUnavailable(`controller ${this.id} could not join the election`, err, this.#endpoints);
    }
    this.#check = setInterval(() => {
      if (this.#createRevision !== null && this.#deposed === null && Date.now() - this.#lastKeepalive >= this.#ttlMs * KEEPALIVE_MARGIN) {
        this.#stepDown(`no lease keepalive succeeded for ${Date.now() - this.#lastKeepalive} ms (leaseTtl ${this.#ttlMs} ms): etcd is unreachable or this process was paused`, false, true);
      }
    }, CHECK_EVERY_MS);
    this.#check.unref();
    await this.#campaign();
  }

  /** Leave: give the lead away at once (delete the key if it is still ours) and revoke the lease. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#check) clearInterval(this.#check);
    for (const w of this.#watchers) await w.cancel().catch(() => {});
    if (this.#createRevision !== null && this.#deposed === null) {
      await this.#client.if(this.#keys.leader, 'Create', '==', this.#createRevision).then(this.#client.delete().key(this.#keys.leader)).commit().catch(() => {});
    }
    this.#createRevision = null;
    await this.#lease?.revoke().catch(() => {});
  }

  #campaign(): Promise<void> {
    this.#campaigning ??= (async () => {
      try {
        if (this.#closed || this.#deposed !== null || this.#createRevision !== null || !this.#lease) return;
        const info: LeaderInfo = { id: this.id, admin: this.#me.admin, host: this.#me.host, pid: this.#me.pid, since: Date.now() };
        const r = await this.#client.if(this.#keys.leader, 'Create', '==', 0)
          .then(this.#lease.put(this.#keys.leader).value(JSON.stringify(info)))
          .else(this.#client.get(this.#keys.leader))
          .commit();
        if (r.succeeded) {
          if (this.#deposed !== null) return;
          this.#createRevision = r.header.revision;
          const previous = this.#lastLeader;
          this.#setLeader(info);
          this.#log.info({ revision: r.header.revision, previous: previous?.id }, `controller ${this.id} leads the fleet`);
          this.emit('elected', previous);
          return;
        }
        const kv = r.responses[0]?.response_range?.kvs?.[0];
        if (kv) this.#setLeader(parse(kv as IKeyValue));
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'campaign failed; trying again when the leader key changes or in a second');
        setTimeout(() => { void this.#campaign(); }, 1_000).unref();
      } finally {
        this.#campaigning = null;
      }
    })();
    return this.#campaigning;
  }

  #onController(kv: IKeyValue): void {
    try {
      const c = JSON.parse(kv.value.toString()) as ControllerInfo;
      this.#controllers.set(c.id, c);
    } catch { /* not ours */ }
  }

  /** A watch event from before this controller created the key (the watch can lag the campaign's answer). */
  #stale(kv: IKeyValue): boolean {
    return this.#createRevision !== null && Number(kv.mod_revision) < Number(this.#createRevision);
  }

  #onLeaderPut(kv: IKeyValue): void {
    if (this.#stale(kv)) return;
    const info = parse(kv);
    if (this.#createRevision !== null && kv.create_revision !== this.#createRevision) {
      this.#stepDown(`${info.id} took the lead`);
    }
    this.#setLeader(info);
  }

  #onLeaderDelete(kv: IKeyValue): void {
    if (this.#stale(kv)) return;
    if (this.#createRevision !== null) {
      this.#stepDown('the leader key expired or was deleted (its lease ran out)');
      return;
    }
    this.#setLeader(null);
    void this.#campaign();
  }

  #setLeader(info: LeaderInfo | null): void {
    const changed = info?.id !== this.#leader?.id || info?.since !== this.#leader?.since;
    this.#leader = info;
    // The last *other* leader (the watch may deliver our own key before the campaign's answer).
    if (info && info.id !== this.id) this.#lastLeader = info;
    if (changed) this.emit('leader', info);
  }

  /** Whether etcd answers now (a read of the leader key). */
  async reachable(): Promise<boolean> {
    return this.#client.get(this.#keys.leader).exec().then(() => true, () => false);
  }

  #stepDown(why: string, leaseLost = false, unreachable = false): void {
    if (this.#deposed !== null || this.#closed) return;
    if (this.#createRevision === null) {
      // A follower: nothing to fence. Without a lease it can never lead; it steps down too (the daemon restarts it).
      if (!leaseLost) return;
    }
    this.#deposed = why;
    this.#createRevision = null;
    if (this.#leader?.id === this.id) this.#leader = null;
    this.#log.error({ reason: why }, `controller ${this.id} stepped down: it no longer leads and writes nothing more`);
    this.emit('deposed', why, unreachable);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parse(kv: IKeyValue): LeaderInfo {
  try {
    return JSON.parse(kv.value.toString()) as LeaderInfo;
  } catch {
    return { id: '?', admin: '', host: '', pid: 0, since: 0 };
  }
}

function describe(l: LeaderInfo): string {
  return `${l.id} at ${l.admin}`;
}

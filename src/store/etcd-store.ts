/**
 * The store of a fleet (issue 11): controller state in etcd, under `<prefix>/<app>/state/`, so
 * that any controller can take over. The same `Store` as SQLite (types.ts; one contract test
 * suite runs against both, test/store-contract.test.ts).
 *
 *   state/env/<color>           EnvironmentState
 *   state/instances/<color>     Instance[]
 *   state/held                  HeldStandby (absent: none)
 *   state/deployments/<id>      DeploymentRecord (the newest DEPLOYMENTS_KEPT)
 *   state/events/<seq>          EventRecord (the newest `eventsKept`; seq zero-padded)
 *   state/seq                   the newest event's seq: monotonic across leaders
 *
 * Reads are served from an in-memory copy: loaded when a controller takes the lead (the leader is
 * then the only writer), kept current by a watch while it follows. A commit is applied to the copy
 * at once and written as ONE etcd transaction fenced by the leadership (Leadership.compares()),
 * in commit order: durable entirely or not at all, and never by a controller that no longer
 * leads. Commits are written behind (the interface is synchronous); `flush()` resolves once every
 * earlier commit is durable — the admin API awaits it before it answers a write — and a route
 * swap goes out in the same transaction as every commit still pending (`publish`), so a route
 * change and the roles it implies are never apart in etcd.
 *
 * Owns: the key layout of state and its retention. Must never: write without the fence, or
 * answer a write as done before etcd has it.
 */
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { COLORS, type Color, type Instance } from '../environments/types.ts';
import { CutoverError, isCutoverError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { fleetUnavailable } from '../fleet/etcd.ts';
import type { FleetKeys } from '../fleet/keys.ts';
import type { Leadership } from '../fleet/leadership.ts';
import { FINISHED_STATUSES, type DeploymentRecord, type EnvironmentState, type EventInput, type EventRecord, type HeldStandby, type Store } from './types.ts';

/** Events kept in etcd: the newest 10 000 (older ones are deleted in the commit that adds a newer one). */
export const DEFAULT_EVENTS_KEPT = 10_000;
/** Deployments kept in etcd: the newest 1 000. */
export const DEPLOYMENTS_KEPT = 1_000;
/** At most this many keys in one transaction (etcd's --max-txn-ops defaults to 128). */
const MAX_TXN_KEYS = 100;
/** A write that etcd could not take is tried again after this long, doubling up to 2 s. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;

type Op = { key: string; value: string | null };
/** A commit not yet in etcd, and how to take it back out of the copy if it never gets there. */
interface Pending { no: number; ops: Op[]; undo: () => void }

export class EtcdStore implements Store {
  readonly #client: Etcd3;
  readonly #keys: FleetKeys;
  readonly #lead: Leadership;
  readonly #log: Logger;
  readonly #endpoints: readonly string[];
  readonly #eventsKept: number;
  #envs = {} as Record<Color, EnvironmentState>;
  #instances = new Map<Color, Instance[]>();
  #held: HeldStandby | null = null;
  #deployments = new Map<string, DeploymentRecord>();
  #events: EventRecord[] = [];
  #seq = 0;
  #pending: Pending[] = [];
  #commitNo = 0;
  #durableNo = 0;
  #waiters: { no: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  #chain: Promise<unknown> = Promise.resolve();
  #scheduled = false;
  #retryMs = RETRY_MIN_MS;
  #failure: CutoverError | null = null;
  #watcher: Watcher | null = null;
  /** Followers: called with each event and deployment the leader wrote (the admin API's event stream). */
  onFollowed: { event?: (e: EventRecord) => void; deployment?: (d: DeploymentRecord) => void; instances?: () => void } = {};

  constructor(o: { client: Etcd3; keys: FleetKeys; leadership: Leadership; logger: Logger; endpoints: readonly string[]; eventsKept?: number }) {
    this.#client = o.client;
    this.#keys = o.keys;
    this.#lead = o.leadership;
    this.#log = o.logger.child({ component: 'etcd-store' });
    this.#endpoints = o.endpoints;
    this.#eventsKept = o.eventsKept ?? DEFAULT_EVENTS_KEPT;
    this.#reset();
    // Deposed: what was not written never will be; the copy goes back to what etcd has.
    o.leadership.on('deposed', () => this.#fail(notLeader(o.leadership)));
  }

  // ───────────────────────────── loading and following ─────────────────────────────

  /** Read all state from etcd into the copy (at take-over, and at start). Returns the etcd revision read at. */
  async load(): Promise<string> {
    let res;
    try {
      res = await this.#client.getAll().prefix(this.#keys.statePrefix).exec();
    } catch (err) {
      throw fleetUnavailable('cannot read the controller state', err, this.#endpoints);
    }
    this.#reset();
    for (const kv of res.kvs) this.#apply(kv.key.toString(), kv.value.toString(), false);
    this.#events.sort((a, b) => a.seq - b.seq);
    return res.header.revision;
  }

  /** Follow the leader's writes from etcd revision `after` on (followers). */
  async follow(after: string): Promise<void> {
    await this.unfollow();
    const w = await this.#client.watch().prefix(this.#keys.statePrefix).startRevision(String(Number(after) + 1)).create();
    w.on('put', (kv: IKeyValue) => this.#apply(kv.key.toString(), kv.value.toString(), true));
    w.on('delete', (kv: IKeyValue) => this.#apply(kv.key.toString(), null, true));
    w.on('disconnected', (err) => this.#log.warn({ err: err.message }, 'lost the state watch; it resumes where it stopped'));
    this.#watcher = w;
  }

  async unfollow(): Promise<void> {
    const w = this.#watcher;
    this.#watcher = null;
    await w?.cancel().catch(() => {});
  }

  #reset(): void {
    const now = Date.now();
    this.#envs = {} as Record<Color, EnvironmentState>;
    for (const c of COLORS) this.#envs[c] = { color: c, role: 'empty', version: null, path: null, since: now, retireAt: null };
    this.#instances = new Map();
    this.#held = null;
    this.#deployments = new Map();
    this.#events = [];
    this.#seq = 0;
  }

  #apply(key: string, value: string | null, live: boolean): void {
    const rest = key.slice(this.#keys.statePrefix.length);
    let v: unknown = null;
    if (value !== null) {
      try { v = JSON.parse(value); } catch { this.#log.warn({ key }, 'ignoring a state key that is not JSON'); return; }
    }
    const [kind, name] = splitOnce(rest);
    if (kind === 'env' && v && isColor(name)) this.#envs[name] = v as EnvironmentState;
    else if (kind === 'instances' && isColor(name)) {
      this.#instances.set(name, (v as Instance[] | null) ?? []);
      if (live) this.onFollowed.instances?.();
    }
    else if (kind === 'held') this.#held = v as HeldStandby | null;
    else if (kind === 'seq' && typeof v === 'number') this.#seq = Math.max(this.#seq, v);
    else if (kind === 'deployments') {
      if (v === null) this.#deployments.delete(name);
      else {
        this.#deployments.set(name, v as DeploymentRecord);
        // After the events of the same write (one watch response): a reader that stops at the
        // deployment's end has seen every event before it, as on the leader.
        if (live) setImmediate(() => this.onFollowed.deployment?.(v as DeploymentRecord));
      }
    } else if (kind === 'events') {
      const seq = Number(name);
      if (v === null) this.#events = this.#events.filter((e) => e.seq !== seq);
      else {
        const e = v as EventRecord;
        this.#seq = Math.max(this.#seq, e.seq);
        if (live) {
          this.#events.push(e);
          if (this.#events.length > this.#eventsKept) this.#events.splice(0, this.#events.length - this.#eventsKept);
          this.onFollowed.event?.(e);
        } else this.#events.push(e);
      }
    }
  }

  // ───────────────────────────── reads (the copy) ─────────────────────────────

  environments(): Record<Color, EnvironmentState> {
    const out = {} as Record<Color, EnvironmentState>;
    for (const c of COLORS) out[c] = { ...this.#envs[c] };
    return out;
  }

  instances(color: Color): Instance[] {
    return (this.#instances.get(color) ?? []).map((i) => ({ ...i }));
  }

  deployment(id: string): DeploymentRecord | null {
    const d = this.#deployments.get(id);
    return d ? structuredClone(d) : null;
  }

  activeDeployment(): DeploymentRecord | null {
    const active = [...this.#deployments.values()].filter((d) => d.status === 'running' || d.status === 'awaiting-promotion');
    active.sort((a, b) => b.createdAt - a.createdAt);
    return active[0] ? structuredClone(active[0]) : null;
  }

  deployments(opts: { limit?: number; since?: number } = {}): DeploymentRecord[] {
    const since = opts.since ?? 0;
    const all = [...this.#deployments.values()].filter((d) => d.createdAt >= since);
    // Newest first; equal times: the later insert first (SQLite: rowid DESC). Map order is insert order.
    const order = new Map([...this.#deployments.keys()].map((k, i) => [k, i]));
    all.sort((a, b) => b.createdAt - a.createdAt || order.get(b.id)! - order.get(a.id)!);
    return all.slice(0, opts.limit ?? 20).map((d) => structuredClone(d));
  }

  events(opts: { deployment?: string; afterSeq?: number; limit?: number } = {}): EventRecord[] {
    const after = opts.afterSeq ?? 0;
    const out: EventRecord[] = [];
    const limit = opts.limit ?? 1000;
    for (const e of this.#events) {
      if (e.seq <= after || (opts.deployment && e.deployment !== opts.deployment)) continue;
      out.push(structuredClone(e));
      if (out.length >= limit) break;
    }
    return out;
  }

  lastEventSeq(): number {
    return this.#seq;
  }

  heldStandby(): HeldStandby | null {
    return this.#held ? structuredClone(this.#held) : null;
  }

  // ───────────────────────────── writes ─────────────────────────────

  commit(change: Parameters<Store['commit']>[0]): EventRecord[] {
    // Named as of now: who leads may have become known since this controller stepped down.
    if (this.#failure) throw this.#failure.code === 'CUTOVER_ERR_NOT_LEADER' ? notLeader(this.#lead) : this.#failure;
    try {
      this.#lead.assertLeader();
    } catch (err) {
      this.#fail(err as CutoverError);
      throw err;
    }
    const k = this.#keys.statePrefix;
    const ops: Op[] = [];
    const stored: EventRecord[] = [];
    for (const e of change.environments ?? []) ops.push({ key: `${k}env/${e.color}`, value: JSON.stringify(e) });
    for (const { color, instances } of change.instances ?? []) ops.push({ key: `${k}instances/${color}`, value: JSON.stringify(instances) });
    if (change.held === null) ops.push({ key: `${k}held`, value: null });
    else if (change.held !== undefined) ops.push({ key: `${k}held`, value: JSON.stringify(change.held) });
    const evictedDeployments: string[] = [];
    if (change.deployment) {
      const d = change.deployment;
      ops.push({ key: `${k}deployments/${d.id}`, value: JSON.stringify(d) });
      if (!this.#deployments.has(d.id) && this.#deployments.size >= DEPLOYMENTS_KEPT) {
        const oldest = [...this.#deployments.values()].filter((x) => FINISHED_STATUSES.includes(x.status)).sort((a, b) => a.createdAt - b.createdAt)[0];
        if (oldest) { evictedDeployments.push(oldest.id); ops.push({ key: `${k}deployments/${oldest.id}`, value: null }); }
      }
    }
    let seq = this.#seq;
    for (const e of change.events ?? []) {
      seq++;
      const rec: EventRecord = { seq, time: Date.now(), type: e.type, deployment: e.deployment ?? null, phase: e.phase ?? null, actor: e.actor, reason: e.reason, durationMs: e.durationMs ?? null, color: e.color ?? null, version: e.version ?? null, data: e.data ?? null };
      stored.push(rec);
      ops.push({ key: eventKey(k, seq), value: JSON.stringify(rec) });
      // Bounded retention: the event `eventsKept` older than this one goes in the same transaction.
      if (seq - this.#eventsKept >= 1) ops.push({ key: eventKey(k, seq - this.#eventsKept), value: null });
    }
    if (stored.length > 0) ops.push({ key: `${k}seq`, value: JSON.stringify(seq) });
    if (ops.length === 0) return stored;
    // The copy first (reads see the commit at once), then the write, in commit order. What the
    // copy held before is kept until the write is durable (undo: the commit never reached etcd).
    const before = {
      envs: (change.environments ?? []).map((e) => ({ ...this.#envs[e.color] })),
      instances: (change.instances ?? []).map(({ color }) => [color, this.#instances.get(color)] as const),
      held: change.held !== undefined ? { value: this.#held } : null,
      deployments: [...evictedDeployments, ...(change.deployment ? [change.deployment.id] : [])].map((id) => [id, this.#deployments.get(id)] as const),
      seq: this.#seq,
    };
    const undo = () => {
      for (const e of before.envs) this.#envs[e.color] = e;
      for (const [c, list] of before.instances) { if (list) this.#instances.set(c, list); else this.#instances.delete(c); }
      if (before.held) this.#held = before.held.value;
      for (const [id, d] of before.deployments) { if (d) this.#deployments.set(id, d); else this.#deployments.delete(id); }
      this.#events = this.#events.filter((e) => e.seq <= before.seq);
      this.#seq = before.seq;
    };
    for (const e of change.environments ?? []) this.#envs[e.color] = { ...e };
    for (const { color, instances } of change.instances ?? []) this.#instances.set(color, instances.map((i) => ({ ...i })));
    if (change.held !== undefined) this.#held = change.held ? structuredClone(change.held) : null;
    for (const id of evictedDeployments) this.#deployments.delete(id);
    if (change.deployment) this.#deployments.set(change.deployment.id, structuredClone(change.deployment));
    for (const e of stored) this.#events.push(e);
    if (this.#events.length > this.#eventsKept) this.#events.splice(0, this.#events.length - this.#eventsKept);
    this.#seq = seq;
    this.#pending.push({ no: ++this.#commitNo, ops, undo });
    this.#schedule();
    return stored.map((e) => structuredClone(e));
  }

  /** Resolves once every commit made before the call is in etcd; rejects when it cannot be (no longer the leader). */
  flush(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    const no = this.#commitNo;
    if (this.#durableNo >= no) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#waiters.push({ no, resolve, reject });
      this.#schedule();
    });
  }

  /**
   * A route-table write (fleet/fleet-data-plane.ts): one fenced transaction with every commit still
   * pending, conditioned also on the table key's mod revision. `succeeded: false`: the table was
   * changed by someone else (the pending commits stay pending and are written next).
   */
  publish(key: string, modRevision: string, value: string): Promise<{ succeeded: boolean; revision: string }> {
    const run = this.#chain.then(() => this.#write({ key, modRevision, value }));
    this.#chain = run.catch(() => {});
    return run as Promise<{ succeeded: boolean; revision: string }>;
  }

  close(): void {
    void this.unfollow();
    for (const w of this.#waiters.splice(0)) w.reject(new CutoverError('CUTOVER_ERR_STATE_WRITE', 'the store was closed before the write reached etcd'));
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // After the current task: a commit followed at once by a route swap goes out with it.
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#pending.length === 0 && this.#waiters.length === 0) return;
      const run = this.#chain.then(() => this.#write(null));
      this.#chain = run.catch(() => {});
    });
  }

  /** One transaction: the pending commits (as many as fit) and, when given, the route write. */
  async #write(route: { key: string; modRevision: string; value: string } | null): Promise<{ succeeded: boolean; revision: string } | void> {
    if (this.#failure) throw this.#failure;
    const batch: Pending[] = [];
    const ops = new Map<string, string | null>();
    for (const p of this.#pending) {
      const keys = new Set([...ops.keys(), ...p.ops.map((o) => o.key)]);
      if (batch.length > 0 && keys.size > MAX_TXN_KEYS) break;
      batch.push(p);
      for (const o of p.ops) ops.set(o.key, o.value);
    }
    if (batch.length === 0 && route === null) { this.#settle(); return; }
    let txn;
    try {
      txn = this.#lead.txn();
    } catch (err) {
      this.#fail(err as CutoverError);
      throw err;
    }
    if (route) txn.and(route.key, 'Mod', '==', route.modRevision);
    const thens = [...ops].map(([key, value]) => (value === null ? this.#client.delete().key(key) : this.#client.put(key).value(value)));
    if (route) thens.push(this.#client.put(route.key).value(route.value));
    let r;
    try {
      r = await txn.then(...thens).commit();
    } catch (err) {
      // Unknown outcome: a route write that did land is recognised by reading it back.
      if (route) {
        const landed = await this.#client.get(route.key).exec().then((g) => (g.kvs[0]?.value.toString() === route.value ? g : null), () => null);
        if (landed) { this.#done(batch); return { succeeded: true, revision: landed.kvs[0].mod_revision }; }
      }
      this.#retryLater();
      throw fleetUnavailable('state not written', err, this.#endpoints);
    }
    if (!r.succeeded) {
      if (await this.#lead.checkFence()) {
        const e = new CutoverError('CUTOVER_ERR_NOT_LEADER', `controller ${this.#lead.id} lost the lead: etcd refused its write (fenced); nothing of it was written`);
        this.#fail(e);
        throw e;
      }
      // Not the fence: the route key's compare failed. The commits go out on their own next.
      this.#schedule();
      return { succeeded: false, revision: r.header.revision };
    }
    this.#done(batch);
    this.#retryMs = RETRY_MIN_MS;
    if (this.#pending.length > 0) this.#schedule();
    return { succeeded: true, revision: r.header.revision };
  }

  #done(batch: Pending[]): void {
    this.#pending.splice(0, batch.length);
    if (batch.length > 0) this.#durableNo = batch[batch.length - 1].no;
    this.#settle();
  }

  #settle(): void {
    if (this.#pending.length === 0) this.#durableNo = this.#commitNo;
    const ready = this.#waiters.filter((w) => w.no <= this.#durableNo);
    this.#waiters = this.#waiters.filter((w) => w.no > this.#durableNo);
    for (const w of ready) w.resolve();
  }

  #retryLater(): void {
    const ms = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
    setTimeout(() => { if (!this.#failure && this.#lead.isLeader()) this.#schedule(); else if (!this.#lead.isLeader()) this.#fail(notLeader(this.#lead)); }, ms).unref();
  }

  /**
   * Final: this store no longer leads; what was pending is dropped (it was never written) and taken
   * back out of the copy, newest first, so that reads show what etcd has (as far as this controller knows).
   */
  #fail(err: CutoverError): void {
    if (this.#failure) return;
    this.#failure = isCutoverError(err) ? err : notLeader(this.#lead);
    if (this.#pending.length > 0) this.#log.warn({ commits: this.#pending.length }, 'commits not written: this controller no longer leads; its state copy is back to what etcd has');
    for (const p of [...this.#pending].reverse()) p.undo();
    this.#pending = [];
    for (const w of this.#waiters.splice(0)) w.reject(this.#failure);
  }
}

function notLeader(lead: Leadership): CutoverError {
  try {
    lead.assertLeader();
  } catch (err) {
    return err as CutoverError;
  }
  return new CutoverError('CUTOVER_ERR_NOT_LEADER', `controller ${lead.id} no longer leads`);
}

function eventKey(prefix: string, seq: number): string {
  return `${prefix}events/${String(seq).padStart(12, '0')}`;
}

function splitOnce(s: string): [string, string] {
  const i = s.indexOf('/');
  return i === -1 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
}

function isColor(s: string): s is Color {
  return (COLORS as readonly string[]).includes(s);
}

/**
 * `cutover router` in fleet mode: the router process of dataplane/router-process.ts, fed from
 * etcd. It registers under a lease, reads the route table, watches it from the next etcd
 * revision (nothing missed, nothing reordered: a table only replaces an older one), applies each
 * revision as one swap and writes back what it applied. When etcd is away it keeps serving its
 * last table, says it is stale, and reconnects with backoff: a new session reads the table again
 * (catching up from wherever it was) before it watches. The last table is also kept on disk, so
 * a router restarted while etcd is down still serves it.
 *
 * Owns: the etcd session of one router. Must never: apply an older revision, serve an empty table
 * after a real one, or stop serving because etcd is unreachable.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Etcd3, Lease } from 'etcd3';
import { RouterProcess, type RouterSettings } from '../router/router-process.ts';
import type { RouteTable } from '../router/route-table.ts';
import type { DrainReport } from '../router/data-plane.ts';
import type { Logger } from '../lib/logger.ts';
import { keepSession, openEtcd, ttlSeconds } from './etcd.ts';
import { DEFAULT_SERVICE, fleetKeys, type FleetKeys, type RouterAck, type RouterRegistration } from './keys.ts';
import type { FleetConfig } from './schema.ts';
import { RecordsPush } from './records-push.ts';

export const TABLE_CACHE_FILE = 'router-table.json';

/**
 * `push`: where this router sends its request records (the controller's admin API and its token);
 * null = not sent (the controller's analysis and metrics then see none of this router's traffic).
 */
export async function startFleetRouter(settings: RouterSettings, fleet: FleetConfig, logger: Logger, push: { adminUrl: string; token: string } | null = null): Promise<RouterProcess> {
  const log = logger.child({ component: 'fleet-router', router: settings.id });
  const keys = fleetKeys(fleet.etcd.prefix, settings.app);
  const cache = path.join(settings.stateDir, TABLE_CACHE_FILE);
  let initial = readCache(cache);
  const probe = openEtcd(fleet);
  try {
    const kv = (await probe.get(keys.routes(DEFAULT_SERVICE)).exec()).kvs[0];
    const fromEtcd = kv ? (JSON.parse(kv.value.toString()) as RouteTable) : null;
    if (fromEtcd && (initial === null || fromEtcd.revision > initial.revision)) initial = fromEtcd;
  } catch (err) {
    log.warn({ err: (err as Error).message, cachedRevision: initial?.revision ?? null }, 'etcd does not answer at start: serving the cached table until it does');
  } finally {
    probe.close();
  }
  const rp = await RouterProcess.start(settings, logger, initial);
  mkdirSync(settings.stateDir, { recursive: true, mode: 0o700 });
  rp.on('applied', () => writeCache(cache, rp.router.table()));
  if (initial) writeCache(cache, rp.router.table());
  const sync = new FleetSync(rp, settings, fleet, keys, log);
  sync.start();
  rp.onShutdown(() => sync.stop());
  if (push) {
    const pusher = new RecordsPush({ ...push, routerId: settings.id, logger: log });
    rp.addRecordSink((b) => pusher.add(b));
    sync.onLeader((admin) => pusher.setAdminUrl(admin));
    rp.onShutdown(async () => pusher.close());
  } else {
    log.warn('no admin token (CUTOVER_TOKEN or the token file): request records are not sent to the controller');
  }
  return rp;
}

export class FleetSync {
  readonly #rp: RouterProcess;
  readonly #s: RouterSettings;
  readonly #fleet: FleetConfig;
  readonly #keys: FleetKeys;
  readonly #log: Logger;
  readonly #service = DEFAULT_SERVICE;
  #closed = false;
  #stale = true;
  #endSession: ((why: string) => void) | null = null;
  #loop: Promise<void> | null = null;
  #leaderListener: ((adminUrl: string) => void) | null = null;
  #leaderAdmin: string | null = null;

  /** `fn` gets the leading controller's admin URL now (if known) and whenever the leader key names another (issue 11). */
  onLeader(fn: (adminUrl: string) => void): void {
    this.#leaderListener = fn;
    if (this.#leaderAdmin) fn(this.#leaderAdmin);
  }

  constructor(rp: RouterProcess, s: RouterSettings, fleet: FleetConfig, keys: FleetKeys, log: Logger) {
    this.#rp = rp; this.#s = s; this.#fleet = fleet; this.#keys = keys; this.#log = log;
  }

  /** True while it cannot hear etcd (serving its last table). */
  get stale(): boolean {
    return this.#stale;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Leave the router set now (revoke the lease), so no controller waits for us while we drain. */
  async stop(): Promise<void> {
    this.#closed = true;
    this.#endSession?.('stopping');
    await this.#loop;
  }

  #run(): Promise<void> {
    return keepSession(() => this.#session(), () => this.#closed, (why) => {
      if (this.#stale) return;
      this.#stale = true;
      this.#log.warn({ reason: why, revision: this.#rp.router.table().revision }, 'lost etcd: serving the last route table (stale) and reconnecting');
    });
  }

  /** One connection to etcd, from registration to whatever ends it; resolves with why it ended. */
  async #session(): Promise<string> {
    const client: Etcd3 = openEtcd(this.#fleet);
    let heartbeat: NodeJS.Timeout | null = null;
    const onApplied = () => { void this.#ack(lease).catch((err: unknown) => end(`acknowledgement not written: ${(err as Error).message}`)); };
    const onDrained = (revision: number, report: DrainReport) => {
      lease.put(this.#keys.drain(this.#service, this.#s.id)).value(JSON.stringify({ ...report, revision })).exec().catch(() => {});
    };
    let end: (why: string) => void = () => {};
    const ended = new Promise<string>((resolve) => { end = resolve; });
    this.#endSession = end;
    const lease: Lease = client.lease(ttlSeconds(this.#fleet.leaseTtl), { autoKeepAlive: true });
    lease.on('lost', (err) => end(`lease lost: ${err.message}`));
    try {
      await lease.grant();
      const reg: RouterRegistration = {
        id: this.#s.id, host: os.hostname(), pid: process.pid, version: this.#s.version, startedAt: this.#rp.startedAt,
        live: `${this.#s.listen.host}:${this.#rp.router.addresses().live.port}`,
        preview: this.#rp.router.addresses().preview ? `${this.#s.preview?.host}:${this.#rp.router.addresses().preview?.port}` : null,
      };
      await lease.put(this.#keys.router(this.#s.id)).value(JSON.stringify(reg)).exec();
      // Catch up: the table as it is now, then every change after that etcd revision, in order.
      const res = await client.get(this.#keys.routes(this.#service)).exec();
      const kv = res.kvs[0];
      if (kv) this.#offer(kv.value.toString());
      await this.#ack(lease);
      const watcher = await client.watch().key(this.#keys.routes(this.#service)).startRevision(String(Number(res.header.revision) + 1)).create();
      watcher.on('put', (w) => this.#offer(w.value.toString()));
      // Where request records go: the leading controller (several controllers; leadership.ts).
      const leaderRes = await client.get(this.#keys.leader).exec();
      if (leaderRes.kvs[0]) this.#onLeader(leaderRes.kvs[0].value.toString());
      const leaderWatch = await client.watch().key(this.#keys.leader).startRevision(String(Number(leaderRes.header.revision) + 1)).create();
      leaderWatch.on('put', (w) => this.#onLeader(w.value.toString()));
      void ended.then(() => leaderWatch.cancel().catch(() => {}));
      watcher.on('disconnected', (err) => end(`watch disconnected: ${err.message}`));
      watcher.on('error', (err) => end(`watch failed: ${err.message}`));
      this.#rp.on('applied', onApplied);
      this.#rp.on('drained', onDrained);
      heartbeat = setInterval(onApplied, Math.max(500, Math.floor(this.#fleet.leaseTtl / 2)));
      heartbeat.unref();
      if (this.#stale) this.#log.info({ revision: this.#rp.router.table().revision, etcdRevision: res.header.revision }, 'connected to etcd: registered, watching the route table');
      this.#stale = false;
      const why = await ended;
      await watcher.cancel().catch(() => {});
      if (why === 'stopping') await lease.revoke().catch(() => {});
      return why;
    } finally {
      if (heartbeat) clearInterval(heartbeat);
      this.#rp.off('applied', onApplied);
      this.#rp.off('drained', onDrained);
      this.#endSession = null;
      client.close();
    }
  }

  #onLeader(text: string): void {
    try {
      const admin = (JSON.parse(text) as { admin?: unknown }).admin;
      if (typeof admin === 'string' && /^https?:\/\//.test(admin)) { this.#leaderAdmin = admin; this.#leaderListener?.(admin); }
    } catch { /* not a leader record */ }
  }

  #offer(text: string): void {
    let table: RouteTable;
    try {
      table = JSON.parse(text) as RouteTable;
    } catch {
      this.#log.error('the route table in etcd is not JSON; keeping the current one');
      return;
    }
    this.#rp.apply(table);
  }

  #ackChain: Promise<void> = Promise.resolve();

  /** Writes what this router serves now (serialised: acknowledgements never overtake each other). */
  #ack(lease: Lease): Promise<void> {
    const next = this.#ackChain.then(async () => {
      const ack: RouterAck = { revision: this.#rp.router.table().revision, appliedAt: this.#rp.appliedAt() ?? Date.now(), seenAt: Date.now() };
      await lease.put(this.#keys.ack(this.#service, this.#s.id)).value(JSON.stringify(ack)).exec();
    });
    this.#ackChain = next.catch(() => {});
    return next;
  }
}

function readCache(file: string): RouteTable | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as RouteTable;
  } catch {
    return null;
  }
}

function writeCache(file: string, table: RouteTable): void {
  try {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(table), { mode: 0o600 });
    renameSync(tmp, file);
  } catch {
    // A cache only: serving never depends on it.
  }
}

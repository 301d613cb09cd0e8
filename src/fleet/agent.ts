/**
 * `cutover agent --id NAME` (issue 11): runs its share of a colour's instances on this host for the
 * controller. A reconcile loop in the Kubernetes-controller sense: the controller writes what it
 * wants in `desired/<service>/<id>` (etcd), the agent makes it so with the process provider's own
 * runner (spawn, stop, restart after a crash, adopt after a restart: environments/process-provider.ts)
 * and writes what runs to `reported/<service>/<id>` under its lease, with each instance's address
 * (`--address`), pid, state, last exit and, when it is down, its last log lines.
 *
 * Restart = reconcile again: what it ran is kept in `<stateDir>/agents/<id>/instances.json`, and a
 * new agent process adopts those instances (same pid, same port) when they are still running and
 * still what the controller wants. When etcd is away it keeps what runs, running (fail-static),
 * and reconnects with backoff; a new session re-reads its desired key before it watches it.
 *
 * Owns: one host's instances and its etcd session. Must never: run an instance the controller did
 * not ask for (strays carrying its mark are stopped at start), stop instances because etcd is
 * unreachable, or write the desired key (the controller's alone).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Etcd3, Lease, Watcher } from 'etcd3';
import { ProcessProvider } from '../environments/process-provider.ts';
import { COLORS, type Color, type Instance } from '../environments/types.ts';
import type { Logger } from '../lib/logger.ts';
import { keepSession, openEtcd, ttlSeconds } from './etcd.ts';
import { DEFAULT_SERVICE, fleetKeys, type AgentRegistration, type DesiredColor, type DesiredInstances, type FleetKeys, type ReportedInstance, type ReportedInstances } from './keys.ts';
import type { FleetConfig } from './schema.ts';

/** Log lines sent with a down instance's report (the controller quotes the last ones): 20. */
const REPORT_LOG_LINES = 20;
export const AGENT_RECORD_FILE = 'instances.json';

export interface AgentOptions {
  id: string;
  app: string;
  /** Host routers and the controller reach this agent's instances on. */
  address: string;
  /** Cutover's state directory on this host; the agent keeps its own under `agents/<id>/`. */
  stateDir: string;
  fleet: FleetConfig;
  process: { command: string; env: Record<string, string>; inheritEnv: readonly string[]; stopTimeout: number };
  version: string;
  logger: Logger;
}

/** What this agent runs of a colour: the wish it acted on (and, on disk, the instances for adoption). */
interface Running { gen: number; version: string; path: string | null; slots: number[]; error: string | null }
interface LocalRecord { colors: Partial<Record<Color, Running & { instances: Instance[] }>> }

export function agentDir(stateDir: string, id: string): string {
  return path.join(path.resolve(stateDir), 'agents', id);
}

export class Agent {
  readonly id: string;
  readonly dir: string;
  readonly #o: AgentOptions;
  readonly #keys: FleetKeys;
  readonly #service = DEFAULT_SERVICE;
  readonly #log: Logger;
  readonly #provider: ProcessProvider;
  readonly #running: Partial<Record<Color, Running>> = {};
  readonly #restarts = new Map<string, { attempt: number; delayMs: number }>();
  /** Desired state chain: reconciles never interleave. */
  #chain: Promise<void> = Promise.resolve();
  #lease: Lease | null = null;
  #closed = false;
  #connected = false;
  #endSession: ((why: string) => void) | null = null;
  #loop: Promise<void> | null = null;
  #reportQueued = false;

  private constructor(o: AgentOptions) {
    this.#o = o;
    this.id = o.id;
    this.dir = agentDir(o.stateDir, o.id);
    this.#keys = fleetKeys(o.fleet.etcd.prefix, o.app);
    this.#log = o.logger.child({ component: 'agent', agent: o.id });
    // The runner of one machine: instances are its process groups, logs under <dir>/logs/.
    this.#provider = new ProcessProvider({
      stateDir: this.dir, command: o.process.command, instances: 1, env: o.process.env, inheritEnv: o.process.inheritEnv,
      stopGraceMs: o.process.stopTimeout, logger: o.logger,
    });
    const changed = () => { this.#save(); this.#queueReport(); };
    this.#provider.on('instance-exit', changed);
    this.#provider.on('instances-changed', changed);
    this.#provider.on('instance-restart', (inst, info) => { this.#restarts.set(inst.id, info); changed(); });
  }

  /** Adopt what the previous agent on this state directory left running, then connect to etcd. */
  static async start(o: AgentOptions): Promise<Agent> {
    const a = new Agent(o);
    mkdirSync(a.dir, { recursive: true, mode: 0o700 });
    await a.#adoptLocal();
    a.#loop = a.#run();
    return a;
  }

  /** True while it hears etcd (registered, watching its desired instances). */
  get connected(): boolean {
    return this.#connected;
  }

  instances(color: Color): Instance[] {
    return this.#provider.instances(color);
  }

  /**
   * Leave. Default: the instances keep running and the lease is left to expire, so an agent started
   * again on this state directory within fleet.leaseTtl takes over without the controller noticing
   * (an upgrade). `stopInstances`: stop them and revoke the lease now (the controller sees them go).
   */
  async stop(o: { stopInstances: boolean }): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#chain;
    if (o.stopInstances) {
      for (const c of COLORS) await this.#provider.stop(c);
      for (const c of COLORS) delete this.#running[c];
      this.#save();
      await this.#lease?.revoke().catch(() => {});
    } else {
      await this.#provider.detach();
    }
    this.#endSession?.('stopping');
    await this.#loop;
  }

  // ── adoption ──

  async #adoptLocal(): Promise<void> {
    const rec = readRecord(path.join(this.dir, AGENT_RECORD_FILE));
    for (const color of COLORS) {
      const r = rec.colors[color];
      // Always adopt, also with nothing recorded: strays carrying this agent's mark are stopped.
      const adopted = await this.#provider.adopt(color, r?.instances ?? []);
      if (!r || r.error !== null) {
        if (adopted.length > 0) await this.#provider.stop(color);
        continue;
      }
      if (adopted.length < r.slots.length) {
        // Some died while no agent watched them: start the colour's share afresh from the desired state.
        this.#log.warn({ color, adopted: adopted.map((i) => i.id), slots: r.slots }, 'not every recorded instance survived; the colour is started again');
        if (adopted.length > 0) await this.#provider.stop(color);
        continue;
      }
      this.#running[color] = { gen: r.gen, version: r.version, path: r.path, slots: r.slots, error: null };
      this.#log.info({ color, version: r.version, adopted: adopted.map((i) => ({ id: i.id, pid: i.pid, port: i.port })) }, 'adopted running instances');
    }
    this.#save();
  }

  // ── the etcd session ──

  #run(): Promise<void> {
    return keepSession(() => this.#session(), () => this.#closed, (why) => {
      if (this.#connected) this.#log.warn({ reason: why }, 'lost etcd: instances keep running; reconnecting');
      this.#connected = false;
    });
  }

  async #session(): Promise<string> {
    const client: Etcd3 = openEtcd(this.#o.fleet);
    let end: (why: string) => void = () => {};
    const ended = new Promise<string>((resolve) => { end = resolve; });
    this.#endSession = end;
    const lease = client.lease(ttlSeconds(this.#o.fleet.leaseTtl), { autoKeepAlive: true });
    lease.on('lost', (err) => end(`lease lost: ${err.message}`));
    let watcher: Watcher | null = null;
    try {
      await lease.grant();
      const reg: AgentRegistration = { id: this.id, address: this.#o.address, hostname: os.hostname(), pid: process.pid, version: this.#o.version, startedAt: Date.now() };
      await lease.put(this.#keys.agent(this.id)).value(JSON.stringify(reg)).exec();
      this.#lease = lease;
      const key = this.#keys.desired(this.#service, this.id);
      const res = await client.get(key).exec();
      await this.#desire(res.kvs[0]?.value.toString() ?? null);
      await this.#report();
      watcher = await client.watch().key(key).startRevision(String(Number(res.header.revision) + 1)).create();
      watcher.on('put', (kv) => { void this.#desire(kv.value.toString()); });
      watcher.on('delete', () => { void this.#desire(null); });
      watcher.on('disconnected', (err) => end(`watch disconnected: ${err.message}`));
      watcher.on('error', (err) => end(`watch failed: ${err.message}`));
      if (!this.#connected) this.#log.info({ address: this.#o.address, etcdRevision: res.header.revision }, 'connected to etcd: registered, watching the desired instances');
      this.#connected = true;
      return await ended;
    } finally {
      this.#lease = null;
      this.#endSession = null;
      await watcher?.cancel().catch(() => {});
      client.close();
    }
  }

  // ── reconcile ──

  /** Act on the controller's wish (a JSON DesiredInstances; null: nothing). Serialised. */
  #desire(text: string | null): Promise<void> {
    let desired: DesiredInstances = { colors: {} };
    if (text !== null) {
      try {
        desired = JSON.parse(text) as DesiredInstances;
      } catch {
        this.#log.error('the desired instances in etcd are not JSON; keeping what runs');
        return this.#chain;
      }
    }
    const next = this.#chain.then(() => this.#reconcile(desired)).then(() => this.#report()).catch((err: unknown) => this.#log.error({ err }, 'reconcile failed'));
    this.#chain = next;
    return next;
  }

  async #reconcile(desired: DesiredInstances): Promise<void> {
    if (this.#closed) return;
    for (const color of COLORS) {
      const want = desired.colors?.[color];
      const have = this.#running[color];
      if (want === undefined) {
        if (have !== undefined || this.#provider.instances(color).length > 0) {
          this.#log.info({ color, version: have?.version }, 'stopping instances the controller no longer wants');
          await this.#provider.stop(color);
        }
        delete this.#running[color];
        continue;
      }
      if (have === undefined || have.gen !== want.gen) await this.#startColor(color, want);
      this.#provider.setAutoRestart(color, want.restart);
    }
    this.#save();
  }

  async #startColor(color: Color, want: DesiredColor): Promise<void> {
    const meta: Running = { gen: want.gen, version: want.version, path: want.path, slots: [...want.slots], error: null };
    try {
      if (want.slots.length === 0) {
        await this.#provider.stop(color);
      } else {
        const started = await this.#provider.start(color, { version: want.version, path: want.path }, { slots: want.slots });
        for (const i of started) this.#restarts.delete(i.id);
        this.#log.info({ color, version: want.version, gen: want.gen, instances: started.map((i) => ({ id: i.id, pid: i.pid, port: i.port })) }, 'started instances');
      }
    } catch (err) {
      meta.error = (err as Error).message;
      this.#log.error({ color, version: want.version, err: meta.error }, 'could not start the instances the controller wants');
    }
    this.#running[color] = meta;
  }

  // ── reporting ──

  #queueReport(): void {
    if (this.#reportQueued) return;
    this.#reportQueued = true;
    this.#chain = this.#chain.then(() => { this.#reportQueued = false; return this.#report(); }).catch(() => {});
  }

  async #report(): Promise<void> {
    const lease = this.#lease;
    if (lease === null) return;
    const body: ReportedInstances = { agent: this.id, colors: {}, instances: [], at: Date.now() };
    for (const color of COLORS) {
      const r = this.#running[color];
      if (r === undefined) continue;
      body.colors[color] = { gen: r.gen, error: r.error };
      for (const inst of this.#provider.instances(color)) body.instances.push(await this.#reported(inst, r.gen));
    }
    try {
      await lease.put(this.#keys.reported(this.#service, this.id)).value(JSON.stringify(body)).exec();
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'report not written; the next session writes it again');
    }
  }

  async #reported(inst: Instance, gen: number): Promise<ReportedInstance> {
    const running = this.#provider.isRunning(inst.id);
    const exit = this.#provider.lastExit(inst.id);
    const log = running ? [] : await this.#provider.logTail(inst.id, REPORT_LOG_LINES).catch(() => []);
    return {
      id: inst.id, color: inst.color, index: inst.index, version: inst.version, host: this.#o.address, port: inst.port,
      pid: inst.pid, path: inst.path, startedAt: inst.startedAt, gen, running,
      exit: exit ? { code: exit.code, signal: exit.signal } : null, log, logPath: this.#provider.logPath(inst.id),
      restart: this.#restarts.get(inst.id) ?? null,
    };
  }

  #save(): void {
    const rec: LocalRecord = { colors: {} };
    for (const color of COLORS) {
      const r = this.#running[color];
      if (r !== undefined) rec.colors[color] = { ...r, instances: this.#provider.instances(color) };
    }
    try {
      const file = path.join(this.dir, AGENT_RECORD_FILE);
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(rec), { mode: 0o600 });
      renameSync(tmp, file);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'could not record the instances (a restarted agent would not adopt them)');
    }
  }
}

function readRecord(file: string): LocalRecord {
  try {
    const rec = JSON.parse(readFileSync(file, 'utf8')) as LocalRecord;
    return rec && typeof rec === 'object' && rec.colors ? rec : { colors: {} };
  } catch {
    return { colors: {} };
  }
}

/**
 * The controller's side of `cutover agent` (issue 11): an environment provider whose instances run
 * on agents on other hosts (`environments.process.hosts`). It spreads a colour's `instances` over
 * the agents (index i on agent i mod n), writes each agent's share to `desired/<service>/<agent>`
 * in one etcd transaction (`write`: the one place desired state is written, with a compare per key
 * and an optional fence hook for the leader), waits for the agents' reports, and gives the
 * controller the reported addresses.
 *
 * An agent whose lease is gone (it died, or lost etcd for fleet.leaseTtl) takes its instances with
 * it at once: each is reported as exited ("agent a1 is gone"), `reachable(id)` turns false (the
 * controller counts it unhealthy and leaves it out of the route table while another instance of the
 * colour is left), and the instances stay listed (status shows them, unhealthy) until the agent is
 * back or the colour is started again.
 *
 * Owns: the controller's etcd view of agents and their instances. Must never: write a desired key
 * outside `write`, wait without a bound, or call an instance running that its agent did not report.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { ComparatorBuilder, Etcd3, IKeyValue, Watcher } from 'etcd3';
import { CutoverError } from '../lib/errors.ts';
import { quote, shorten } from '../lib/quote.ts';
import type { Logger } from '../lib/logger.ts';
import { COLORS, type Color, type EnvironmentProvider, type Instance, type ProviderEvents, type Release } from '../environments/types.ts';
import { fleetUnavailable, openEtcd } from './etcd.ts';
import { DEFAULT_SERVICE, fleetKeys, type AgentRegistration, type DesiredInstances, type FleetKeys, type ReportedInstance, type ReportedInstances } from './keys.ts';
import type { FleetConfig } from './schema.ts';

/** Beyond stopTimeout, how long a stop waits for the agents to report the colour gone: 5 seconds. */
const STOP_REPORT_SLACK_MS = 5_000;
/** Longest quoted log line in a failure message: 300 characters. */
const MAX_QUOTED_LINE = 300;
/** Lines Cutover itself writes into an instance log (start and exit markers). */
const OWN_LINE = /^\[cutover \d{4}-\d\d-\d\dT[^\]]*\] /;

/** Extra compares for every desired-state transaction (e.g. "my leader key still exists"); default none. */
export type TxnFence = (txn: ComparatorBuilder) => ComparatorBuilder;

export interface AgentProviderOptions {
  app: string;
  fleet: FleetConfig;
  /** Agent ids to spread instances over, in order; 'auto': every registered agent, by id. */
  hosts: readonly string[] | 'auto';
  instances: number;
  startTimeoutMs: number;
  stopTimeoutMs: number;
  releaseDir?: string;
  logger: Logger;
  fence?: TxnFence;
}

interface Known { inst: Instance; agent: string; rep: ReportedInstance }
interface Waiter { check: () => void }

export class AgentProvider extends EventEmitter<ProviderEvents> implements EnvironmentProvider {
  readonly kind = 'process' as const;
  readonly #o: AgentProviderOptions;
  readonly #keys: FleetKeys;
  readonly #service = DEFAULT_SERVICE;
  readonly #log: Logger;
  readonly #client: Etcd3;
  readonly #ready: Promise<void>;
  #watcher: Watcher | null = null;
  #closed = false;
  readonly #agents = new Map<string, AgentRegistration>();
  readonly #reports = new Map<string, ReportedInstances>();
  readonly #desired = new Map<string, { value: DesiredInstances; mod: string }>();
  /** The last report of each instance id (kept when its agent is gone: status shows it unhealthy). */
  readonly #known = new Map<string, Known>();
  readonly #restart = new Map<Color, boolean>();
  readonly #waiters = new Set<Waiter>();
  readonly #queues = new Map<Color, Promise<unknown>>();
  /** What was last said in 'instances-changed' per colour, so that only a real change is said. */
  readonly #said = new Map<Color, string>();
  /** Colours being started: their instances are said once, when the start is done. */
  readonly #starting = new Set<Color>();
  #gen = 0;

  constructor(o: AgentProviderOptions) {
    super();
    if (!Number.isInteger(o.instances) || o.instances < 1) throw new CutoverError('CUTOVER_ERR_CONFIG', `environments.process.instances must be a whole number ≥ 1, got ${o.instances}`);
    this.#o = o;
    this.#keys = fleetKeys(o.fleet.etcd.prefix, o.app);
    this.#log = o.logger.child({ component: 'environments', provider: 'agents' });
    this.#client = openEtcd(o.fleet);
    this.#ready = this.#attach();
    this.#ready.catch(() => {}); // surfaced by the first call that needs it
  }

  // ── reading etcd ──

  async #attach(): Promise<void> {
    let res;
    try {
      res = await this.#client.getAll().prefix(this.#keys.root).exec();
    } catch (err) {
      throw fleetUnavailable('cannot read the agents and their instances', err, this.#o.fleet.etcd.endpoints);
    }
    for (const kv of res.kvs) this.#onPut(kv, true);
    this.#watcher = await this.#client.watch().prefix(this.#keys.root).startRevision(String(Number(res.header.revision) + 1)).create();
    this.#watcher.on('put', (kv) => this.#onPut(kv, false));
    this.#watcher.on('delete', (kv) => this.#onDelete(kv));
    this.#watcher.on('disconnected', (err) => this.#log.warn({ err: err.message }, 'lost the etcd watch of the agents; it resumes where it stopped'));
    this.#log.info({ agents: [...this.#agents.keys()] }, 'attached to the agents');
  }

  #onPut(kv: IKeyValue, initial: boolean): void {
    const key = kv.key.toString();
    let value: unknown;
    try {
      value = JSON.parse(kv.value.toString());
    } catch {
      return;
    }
    if (key.startsWith(this.#keys.agentsPrefix)) {
      const reg = value as AgentRegistration;
      const back = !this.#agents.has(reg.id);
      this.#agents.set(reg.id, reg);
      if (back && !initial) this.#log.info({ agent: reg.id, address: reg.address }, 'agent registered');
    } else if (key.startsWith(this.#keys.desiredPrefix(this.#service))) {
      const agent = key.slice(this.#keys.desiredPrefix(this.#service).length);
      const d = value as DesiredInstances;
      this.#desired.set(agent, { value: d, mod: kv.mod_revision });
      for (const c of Object.values(d.colors ?? {})) this.#gen = Math.max(this.#gen, c?.gen ?? 0);
    } else if (key.startsWith(this.#keys.reportedPrefix(this.#service))) {
      this.#onReport(value as ReportedInstances, initial);
    } else {
      return;
    }
    this.#changed(initial);
  }

  #onDelete(kv: IKeyValue): void {
    const key = kv.key.toString();
    if (key.startsWith(this.#keys.agentsPrefix)) {
      const id = key.slice(this.#keys.agentsPrefix.length);
      if (this.#agents.delete(id)) this.#gone(id);
    } else if (key.startsWith(this.#keys.reportedPrefix(this.#service))) {
      const id = key.slice(this.#keys.reportedPrefix(this.#service).length);
      if (this.#reports.delete(id)) this.#gone(id);
    } else if (key.startsWith(this.#keys.desiredPrefix(this.#service))) {
      this.#desired.delete(key.slice(this.#keys.desiredPrefix(this.#service).length));
    } else {
      return;
    }
    this.#changed(false);
  }

  /** A report: compare with what was known to say which instances exited or restarted. */
  #onReport(rep: ReportedInstances, initial: boolean): void {
    this.#reports.set(rep.agent, rep);
    for (const r of rep.instances ?? []) {
      const prev = this.#known.get(r.id);
      const inst = toInstance(r);
      this.#known.set(r.id, { inst, agent: rep.agent, rep: r });
      if (initial || prev === undefined || prev.rep.gen !== r.gen || !this.#current(r.id)) continue;
      if (prev.rep.running && !r.running) {
        this.emit('instance-exit', { ...inst }, { code: r.exit?.code ?? null, signal: r.exit?.signal ?? null });
      } else if (r.running && r.pid !== prev.rep.pid && r.restart !== null) {
        this.emit('instance-restart', { ...inst }, { attempt: r.restart.attempt, delayMs: r.restart.delayMs });
      }
    }
  }

  /** An agent's lease is gone: its instances exited, as far as anyone routing to them is concerned. */
  #gone(agent: string): void {
    const ttl = `${Math.round(this.#o.fleet.leaseTtl / 100) / 10}s`;
    for (const k of this.#known.values()) {
      if (k.agent !== agent || !k.rep.running || !this.#current(k.inst.id)) continue;
      k.rep = { ...k.rep, running: false };
      this.#log.warn({ agent, instance: k.inst.id }, 'agent gone: its instance counts as down');
      this.emit('instance-exit', { ...k.inst }, { code: null, signal: null, reason: `its agent ${agent} is gone (lease expired: the agent stopped, died or lost etcd for ${ttl})` });
    }
  }

  /** Wake the waiters and say which colours' instances (or their reachability) changed. */
  #changed(initial: boolean): void {
    for (const w of [...this.#waiters]) w.check();
    if (initial) return;
    for (const color of COLORS) {
      if (this.#starting.has(color)) continue;
      const now = this.instances(color);
      const said = JSON.stringify(now.map((i) => [i.id, i.host, i.port, i.pid, this.reachable(i.id)]));
      if (this.#said.get(color) === said) continue;
      const first = !this.#said.has(color);
      this.#said.set(color, said);
      if (!first || now.length > 0) this.emit('instances-changed', color, now);
    }
  }

  // ── what the controller reads ──

  /** The agents each of a colour's slots is desired on, with the wish's generation. */
  #placement(color: Color): { agent: string; slot: number; gen: number }[] {
    const out: { agent: string; slot: number; gen: number }[] = [];
    for (const [agent, d] of this.#desired) {
      const c = d.value.colors?.[color];
      if (c) for (const slot of c.slots) out.push({ agent, slot, gen: c.gen });
    }
    return out.sort((a, b) => a.slot - b.slot);
  }

  /** Whether an id is one of the instances the controller currently wants (its agent, its generation). */
  #current(id: string): boolean {
    const k = this.#known.get(id);
    if (!k) return false;
    return this.#placement(k.inst.color).some((p) => p.agent === k.agent && p.slot === k.inst.index && p.gen === k.rep.gen);
  }

  /** A colour's instances as their agents last reported them (those of a gone agent included). */
  instances(color: Color): Instance[] {
    const out: Instance[] = [];
    for (const p of this.#placement(color)) {
      const k = this.#known.get(`${color}-${p.slot}`);
      if (k && k.agent === p.agent && k.rep.gen === p.gen) out.push({ ...k.inst });
    }
    return out;
  }

  /** False when the instance's agent is gone (no registration or report under a live lease). */
  reachable(id: string): boolean {
    const k = this.#known.get(id);
    if (!k) return false;
    return this.#agents.has(k.agent) && (this.#reports.get(k.agent)?.instances ?? []).some((r) => r.id === id && r.gen === k.rep.gen);
  }

  /** Where an instance runs: its agent's id. */
  agentOf(id: string): string | null {
    return this.#known.get(id)?.agent ?? null;
  }

  agents(): AgentRegistration[] {
    return [...this.#agents.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** For status: each registered agent (and each named in hosts but not registered) with the instances it reports. */
  agentStatus(): { id: string; registered: boolean; address: string | null; hostname: string | null; pid: number | null; version: string | null; instances: { id: string; port: number; pid: number | null; running: boolean }[] }[] {
    const ids = new Set([...this.#agents.keys(), ...(this.#o.hosts === 'auto' ? [] : this.#o.hosts)]);
    return [...ids].sort().map((id) => {
      const reg = this.#agents.get(id);
      return {
        id, registered: reg !== undefined, address: reg?.address ?? null, hostname: reg?.hostname ?? null, pid: reg?.pid ?? null, version: reg?.version ?? null,
        instances: (this.#reports.get(id)?.instances ?? []).map((i) => ({ id: i.id, port: i.port, pid: i.pid, running: i.running })),
      };
    });
  }

  lastExit(id: string): { code: number | null; signal: string | null } | null {
    return this.#known.get(id)?.rep.exit ?? null;
  }

  async logTail(id: string, lines: number): Promise<string[]> {
    return (this.#known.get(id)?.rep.log ?? []).slice(-lines);
  }

  /** `agent:path` — the log file is on the agent's host. */
  logPath(id: string): string {
    const k = this.#known.get(id);
    if (!k) throw new CutoverError('CUTOVER_ERR_NOT_FOUND', `no instance ${JSON.stringify(id)}`);
    return `${k.agent}:${k.rep.logPath}`;
  }

  /**
   * The release directory is on the agents' hosts: it must be absolute here, and each agent
   * reports when it is not there (the start then fails naming the agent).
   */
  checkRelease(p: string | null, version: string): string | null {
    const fromTemplate = !p && this.#o.releaseDir !== undefined;
    const dir = p || (this.#o.releaseDir?.replaceAll('{version}', version) ?? null);
    if (!dir) {
      throw new CutoverError('CUTOVER_ERR_RELEASE_PATH', 'the agents need the release directory: pass --path DIR (a directory on the agents\' hosts), or set environments.process.releaseDir in the config', { details: { field: 'path' } });
    }
    if (!path.isAbsolute(dir)) {
      throw new CutoverError('CUTOVER_ERR_RELEASE_PATH', `release directory ${quote(dir)}${fromTemplate ? ' (environments.process.releaseDir)' : ''} is relative: agents need an absolute path on their hosts; nothing was changed`, { details: { field: 'path' } });
    }
    return dir;
  }

  // ── what the controller asks ──

  start(color: Color, release: Release): Promise<Instance[]> {
    return this.#serial(color, async () => {
      await this.#ready;
      const agents = this.#pick();
      const gen = this.#gen = Math.max(this.#gen + 1, Date.now());
      const slots = new Map<string, number[]>(agents.map((a) => [a, []]));
      for (let i = 0; i < this.#o.instances; i++) slots.get(agents[i % agents.length])!.push(i);
      const restart = this.#restart.get(color) ?? false;
      const next = this.#withColor(color, (agent) => {
        const s = slots.get(agent);
        return s && s.length > 0 ? { version: release.version, path: release.path, slots: s, restart, gen } : undefined;
      });
      const busy = [...slots].filter(([, s]) => s.length > 0);
      this.#starting.add(color);
      try {
        await this.write(next);
        await this.#until(() => this.#started(color, gen, busy), this.#o.startTimeoutMs, () => {
          const late = busy.filter(([a]) => this.#reports.get(a)?.colors?.[color]?.gen !== gen).map(([a]) => a);
          return new CutoverError('CUTOVER_ERR_PROVISION', `${color} (${release.version}) did not start within ${this.#o.startTimeoutMs / 1000}s (environments.process.startTimeout): ${late.length > 0 ? `no report from agent(s) ${late.join(', ')}` : 'not every instance was reported running'}`, { details: { color, version: release.version, agents: late } });
        });
      } catch (err) {
        await this.#stopColor(color).catch(() => {}); // never leave half a colour running
        throw err;
      } finally {
        this.#starting.delete(color);
      }
      this.#log.info({ color, version: release.version, placement: Object.fromEntries(busy) }, 'instances started on agents');
      const now = this.instances(color);
      this.#said.set(color, JSON.stringify(now.map((i) => [i.id, i.host, i.port, i.pid, this.reachable(i.id)])));
      this.emit('instances-changed', color, now);
      return now;
    });
  }

  stop(color: Color): Promise<void> {
    return this.#serial(color, async () => {
      await this.#ready;
      await this.#stopColor(color);
      this.#said.set(color, '[]');
      this.emit('instances-changed', color, []);
    });
  }

  adopt(color: Color, recorded: Instance[]): Promise<Instance[]> {
    return this.#serial(color, async () => {
      await this.#ready;
      const now = this.instances(color).filter((i) => this.reachable(i.id));
      const dropped = recorded.filter((r) => !now.some((i) => i.id === r.id));
      if (dropped.length > 0) this.#log.info({ color, dropped: dropped.map((i) => i.id) }, 'recorded instances not reported by any agent; dropped');
      const changed = dropped.length > 0 || now.some((i) => { const r = recorded.find((x) => x.id === i.id); return !r || r.host !== i.host || r.port !== i.port || r.pid !== i.pid; });
      this.#said.set(color, JSON.stringify(this.instances(color).map((i) => [i.id, i.host, i.port, i.pid, this.reachable(i.id)])));
      if (changed) this.emit('instances-changed', color, now);
      return now;
    });
  }

  setAutoRestart(color: Color, on: boolean): void {
    this.#restart.set(color, on);
    void this.#serial(color, async () => {
      await this.#ready;
      const next = this.#withColor(color, (_agent, cur) => (cur && cur.restart !== on ? { ...cur, restart: on } : cur), true);
      if (next.size > 0) await this.write(next);
    }).catch((err: unknown) => this.#log.error({ err, color }, 'could not tell the agents whether to restart crashed instances'));
  }

  async detach(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of [...this.#waiters]) w.check();
    await this.#watcher?.cancel().catch(() => {});
    this.#client.close();
  }

  /**
   * The one writer of desired state: one transaction over every key given, each compared with the
   * mod revision this provider last saw (no concurrent writer slips in between), plus the fence's
   * compares (the leader's, once wired: issue 11 items 1–4).
   */
  async write(next: ReadonlyMap<string, DesiredInstances>): Promise<void> {
    if (next.size === 0) return;
    let txn: ComparatorBuilder | null = null;
    const puts = [];
    for (const [agent, value] of next) {
      const key = this.#keys.desired(this.#service, agent);
      const mod = this.#desired.get(agent)?.mod ?? '0';
      txn = txn === null ? this.#client.if(key, 'Mod', '==', mod) : txn.and(key, 'Mod', '==', mod);
      puts.push(this.#client.put(key).value(JSON.stringify(value)));
    }
    let t = txn as ComparatorBuilder;
    if (this.#o.fence) t = this.#o.fence(t);
    let r;
    try {
      r = await t.then(...puts).commit();
    } catch (err) {
      throw fleetUnavailable('the desired instances were not written', err, this.#o.fleet.etcd.endpoints);
    }
    if (!r.succeeded) {
      throw new CutoverError('CUTOVER_ERR_CONFLICT', `the desired instances in etcd (${this.#keys.desiredPrefix(this.#service)}) were changed by someone else since this controller read them (another controller?); nothing was written`, { details: { agents: [...next.keys()] } });
    }
    for (const [agent, value] of next) this.#desired.set(agent, { value, mod: r.header.revision });
  }

  // ── helpers ──

  /** The agents to spread over; refuses, naming them, agents that are not registered. */
  #pick(): string[] {
    if (this.#o.hosts === 'auto') {
      const all = this.agents().map((a) => a.id);
      if (all.length === 0) throw new CutoverError('CUTOVER_ERR_PROVISION', 'no agent is registered in etcd (environments.process.hosts: auto): start `cutover agent --id NAME` on the application hosts', { details: { hosts: 'auto' } });
      return all;
    }
    const missing = this.#o.hosts.filter((h) => !this.#agents.has(h));
    if (missing.length > 0) {
      throw new CutoverError('CUTOVER_ERR_PROVISION', `agent${missing.length > 1 ? 's' : ''} ${missing.map((m) => JSON.stringify(m)).join(', ')} (environments.process.hosts) ${missing.length > 1 ? 'are' : 'is'} not registered in etcd: is \`cutover agent --id ${missing[0]}\` running and connected? Registered: ${this.agents().map((a) => a.id).join(', ') || 'none'}; nothing was started`, { details: { missing, registered: this.agents().map((a) => a.id) } });
    }
    return [...this.#o.hosts];
  }

  /**
   * Each agent's desired state with `color` replaced by `f(agent, current)`, for every agent that
   * has the colour now or gets it. `onlyChanged`: leave out agents whose state stays the same.
   */
  #withColor(color: Color, f: (agent: string, cur: DesiredInstances['colors'][Color]) => DesiredInstances['colors'][Color], onlyChanged = false): Map<string, DesiredInstances> {
    const out = new Map<string, DesiredInstances>();
    const agents = new Set([...this.#desired.keys(), ...(this.#o.hosts === 'auto' ? this.#agents.keys() : this.#o.hosts)]);
    for (const agent of agents) {
      const cur = this.#desired.get(agent)?.value ?? { colors: {} };
      const before = cur.colors?.[color];
      const after = f(agent, before);
      if (before === undefined && after === undefined) continue;
      if (onlyChanged && JSON.stringify(before) === JSON.stringify(after)) continue;
      const colors = { ...cur.colors };
      if (after === undefined) delete colors[color];
      else colors[color] = after;
      out.set(agent, { colors });
    }
    return out;
  }

  /** null: not yet; an error: the start failed; true: every slot reported with its process. */
  #started(color: Color, gen: number, busy: [string, number[]][]): true | CutoverError | null {
    for (const [agent, slots] of busy) {
      if (!this.#agents.has(agent)) return new CutoverError('CUTOVER_ERR_PROVISION', `agent ${agent} left (its lease expired) while starting ${color}`, { details: { agent, color } });
      const rep = this.#reports.get(agent);
      const c = rep?.colors?.[color];
      if (!rep || c?.gen !== gen) return null;
      if (c.error !== null) return new CutoverError('CUTOVER_ERR_PROVISION', `agent ${agent} could not start ${color}: ${c.error}`, { details: { agent, color } });
      for (const slot of slots) {
        const r = rep.instances.find((i) => i.id === `${color}-${slot}` && i.gen === gen);
        if (!r || r.pid === null) return null;
        if (!r.running && r.exit !== null) {
          return new CutoverError('CUTOVER_ERR_PROVISION', `instance ${r.id} on agent ${agent} exited with ${exitText(r.exit)} right after it started${failureNote(agent, r)}`, { details: { agent, instance: r.id, exit: r.exit, log: r.log.slice(-5), logPath: `${agent}:${r.logPath}` } });
        }
      }
    }
    return true;
  }

  /** Remove the colour from every agent's desired state and wait (bounded) until they report it gone. */
  async #stopColor(color: Color): Promise<void> {
    const had = this.#placement(color).map((p) => p.agent);
    await this.write(this.#withColor(color, () => undefined));
    const agents = [...new Set(had)];
    await this.#until(() => agents.every((a) => !this.#agents.has(a) || !(this.#reports.get(a)?.instances ?? []).some((i) => i.color === color)) || null, this.#o.stopTimeoutMs + STOP_REPORT_SLACK_MS, () => {
      const still = agents.filter((a) => (this.#reports.get(a)?.instances ?? []).some((i) => i.color === color));
      return new CutoverError('CUTOVER_ERR_PROVISION', `agent(s) ${still.join(', ')} still report ${color} instances after the stop`, { details: { agents: still, color } });
    }).catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, 'stop not confirmed by every agent; they stop the instances when they hear etcd'));
    for (const [id, k] of this.#known) if (k.inst.color === color) this.#known.delete(id);
  }

  /** Resolve when `check` says true, reject with its error, or with `timeout()` after `ms`. */
  #until(check: () => true | CutoverError | null, ms: number, timeout: () => CutoverError): Promise<void> {
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        check: () => {
          if (this.#closed) { done(); reject(new CutoverError('CUTOVER_ERR_INVALID_STATE', 'the agent provider is detached (daemon shutting down)')); return; }
          const r = check();
          if (r === null) return;
          done();
          if (r === true) resolve(); else reject(r);
        },
      };
      const timer = setTimeout(() => { done(); reject(timeout()); }, ms);
      const done = () => { clearTimeout(timer); this.#waiters.delete(w); };
      this.#waiters.add(w);
      w.check();
    });
  }

  #serial<T>(color: Color, fn: () => Promise<T>): Promise<T> {
    const prev = this.#queues.get(color) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.#queues.set(color, next.catch(() => {}));
    return next;
  }
}

function toInstance(r: ReportedInstance): Instance {
  return { id: r.id, color: r.color, index: r.index, version: r.version, host: r.host, port: r.port, pid: r.pid, path: r.path, startedAt: r.startedAt };
}

function exitText(exit: { code: number | null; signal: string | null }): string {
  if (exit.signal) return `signal ${exit.signal}`;
  return exit.code === null ? 'an unknown status' : `code ${exit.code}`;
}

/** `; last log line: "…" (log: a1:/srv/.cutover/agents/a1/logs/green-0.log)`, as the local provider's failures read. */
function failureNote(agent: string, r: ReportedInstance): string {
  const last = r.log.filter((l) => !OWN_LINE.test(l) && l.trim() !== '').at(-1);
  const where = ` (log: ${agent}:${r.logPath})`;
  if (last === undefined) return `; it wrote nothing to its log${where}`;
  return `; last log line: ${JSON.stringify(shorten(last.trim(), MAX_QUOTED_LINE))}${where}`;
}

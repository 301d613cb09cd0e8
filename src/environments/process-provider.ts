/**
 * The `process` environment provider: runs each colour's instances as local processes.
 * Owns: spawning (one detached process group per instance, output appended to a log file),
 * stopping (SIGTERM to the group, SIGKILL after the grace period), restarting crashed
 * instances with backoff, adopting survivors after a daemon restart, and holding a colour's
 * instances aside (still running and supervised) while the next release starts beside them.
 * Must never: touch traffic (the controller routes), signal a process it has not identified
 * as its own, or leave running an instance it no longer tracks (no orphans, no duplicates).
 *
 * @example
 *   const p = new ProcessProvider({ stateDir: '.cutover', command: 'node server.js', instances: 2 });
 *   const instances = await p.start('green', { version: 'v42', path: '/srv/shop/v42' });
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, openSync, statSync, writeSync } from 'node:fs';
import { appendFile, mkdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CutoverError } from '../lib/errors.ts';
import { inheritedEnv } from '../lib/child-env.ts';
import { quote, shorten } from '../lib/quote.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import { pickFreePort, probePort } from './ports.ts';
import { groupExists, isAlive, listPids, readEnviron, readStat, sendSignal } from './proc.ts';
import type { Color, EnvironmentProvider, Instance, ProviderEvents, Release } from './types.ts';

/** How long an instance may take to exit after SIGTERM before it gets SIGKILL: 10 seconds. */
export const DEFAULT_STOP_GRACE_MS = 10_000;
/** First restart delay after a crash: 250 ms, doubling per consecutive crash… */
export const DEFAULT_RESTART_INITIAL_MS = 250;
/** …up to 10 seconds. */
export const DEFAULT_RESTART_MAX_MS = 10_000;
/** An instance that stayed up this long before crashing starts the backoff over: 30 seconds. */
export const DEFAULT_RESTART_RESET_AFTER_MS = 30_000;
/** How often adopted instances (not our children: no 'exit' event) are checked: 500 ms. */
export const DEFAULT_ADOPTED_POLL_MS = 500;
export const DEFAULT_HOST = '127.0.0.1';
/** Poll step while waiting for a stopped process group to disappear: 25 ms. */
const STOP_POLL_MS = 25;
/** How long to wait for the kernel to remove a SIGKILLed group before reporting it: 2 seconds. */
const KILL_WAIT_MS = 2_000;
/** `logTail` reads at most this much from the end of a log file: 64 KiB. */
const LOG_TAIL_MAX_BYTES = 64 * 1024;

export interface ProcessProviderOptions {
  /** Cutover's state directory; logs go to `<stateDir>/logs/<color>-<index>.log`. */
  stateDir: string;
  /** Shell command run in the release directory as `/bin/sh -c "exec <command>"`. */
  command: string;
  /** Number of instances per colour. */
  instances: number;
  /** Absolute release directory template with `{version}`, used when a deploy names no directory. */
  releaseDir?: string;
  /** Extra environment for instances (the PORT and CUTOVER_* variables win over it). */
  env?: Record<string, string>;
  /** Variables passed from the daemon's environment besides BASE_INHERITED_ENV (src/lib/child-env.ts). */
  inheritEnv?: readonly string[];
  /** Values no inherited variable may hold (the admin token, webhook secrets); such a variable is dropped. */
  secrets?: readonly string[];
  stopGraceMs?: number;
  /** Loopback address instances listen on (passed to them only through PORT; they must bind it). */
  host?: string;
  restartBackoff?: { initialMs: number; maxMs: number; resetAfterMs?: number };
  /** Liveness poll interval for adopted instances. */
  adoptedPollMs?: number;
  logger?: Logger;
}

/** The last unplanned exit of an instance. `code`/`signal` are null for adopted processes (not our children). */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
  at: number;
  uptimeMs: number;
}

/** One instance slot under supervision. `instance` is mutated in place; callers only get copies. */
interface Supervised {
  instance: Instance;
  /** Our child process; null when adopted from a previous daemon or when down. */
  child: ChildProcess | null;
  /** /proc start time of an adopted leader: a reused pid has a different one. */
  startTime: string | null;
  running: boolean;
  /** Being stopped (or dropped): never restarted, its exit is not a crash. */
  retired: boolean;
  /** Set aside by hold(): a warm standby while a new release starts on its colour; always restarted. */
  held: boolean;
  /** Consecutive crash count driving the backoff. */
  attempt: number;
  restartTimer: NodeJS.Timeout | null;
  pollTimer: NodeJS.Timeout | null;
  lastExit: ExitInfo | null;
}

interface FoundProcess {
  pid: number;
  env: Map<string, string>;
  startTime: string;
}

const INSTANCE_ID = /^(blue|green)-(\d+)$/;

export class ProcessProvider extends EventEmitter<ProviderEvents> implements EnvironmentProvider {
  readonly kind = 'process' as const;
  readonly stateDir: string;
  private readonly opts: ProcessProviderOptions;
  private readonly host: string;
  private readonly stopGraceMs: number;
  private readonly backoff: { initialMs: number; maxMs: number; resetAfterMs: number };
  private readonly adoptedPollMs: number;
  private readonly log: Logger;
  private readonly members = new Map<Color, Supervised[]>();
  /** Instances set aside by hold(): not the colour's instances(), still running and restarted. */
  private readonly heldMembers = new Map<Color, Supervised[]>();
  private readonly autoRestart = new Map<Color, boolean>();
  /** Per-colour chain: start/stop/adopt of one colour never interleave. */
  private readonly queues = new Map<Color, Promise<unknown>>();
  private detached = false;

  constructor(opts: ProcessProviderOptions) {
    super();
    if (!Number.isInteger(opts.instances) || opts.instances < 1) {
      throw new CutoverError('CUTOVER_ERR_CONFIG', `environments.process.instances must be a whole number ≥ 1, got ${opts.instances}`);
    }
    if (opts.command.trim() === '') throw new CutoverError('CUTOVER_ERR_CONFIG', 'environments.process.command is empty');
    this.opts = opts;
    // Absolute, because it is the mark we look for in /proc/<pid>/environ after a restart,
    // when the daemon may have been started from another working directory.
    this.stateDir = path.resolve(opts.stateDir);
    this.host = opts.host ?? DEFAULT_HOST;
    this.stopGraceMs = opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    this.backoff = {
      initialMs: opts.restartBackoff?.initialMs ?? DEFAULT_RESTART_INITIAL_MS,
      maxMs: opts.restartBackoff?.maxMs ?? DEFAULT_RESTART_MAX_MS,
      resetAfterMs: opts.restartBackoff?.resetAfterMs ?? DEFAULT_RESTART_RESET_AFTER_MS,
    };
    this.adoptedPollMs = opts.adoptedPollMs ?? DEFAULT_ADOPTED_POLL_MS;
    this.log = (opts.logger ?? silentLogger).child({ component: 'environments', provider: 'process' });
  }

  // ── public API ──────────────────────────────────────────────────────────────────────────

  /**
   * `slots`: the instance indices to run (`cutover agent`: the controller spreads a colour's
   * instances over agents, each runs its share); default: `instances` slots the held set does not use.
   */
  start(color: Color, release: Release, opts: { slots?: readonly number[] } = {}): Promise<Instance[]> {
    return this.serial(color, () => this.doStart(color, release, opts.slots));
  }

  stop(color: Color): Promise<void> {
    return this.serial(color, () => this.doStop(color));
  }

  /** Current instances of a colour, including ones that are down (crashed, awaiting restart or not restarted). */
  instances(color: Color): Instance[] {
    return (this.members.get(color) ?? []).map((s) => ({ ...s.instance }));
  }

  adopt(color: Color, recorded: Instance[]): Promise<Instance[]> {
    return this.serial(color, () => this.doAdopt(color, recorded));
  }

  /**
   * Set the colour's instances aside: they keep running (and are restarted after a crash) but are
   * no longer its instances(), so that `start` runs a new release beside them on other slots.
   */
  hold(color: Color): Promise<Instance[]> {
    return this.serial(color, async () => {
      this.assertAttached();
      // One held set per colour: an older one (never expected) is stopped, not leaked.
      if (this.heldMembers.has(color)) await this.doStopHeld(color);
      const members = this.members.get(color) ?? [];
      this.members.delete(color);
      for (const sup of members) sup.held = true;
      if (members.length > 0) this.heldMembers.set(color, members);
      this.log.info({ color, held: members.map((s) => s.instance.id) }, 'instances held beside the next release');
      return members.map((s) => ({ ...s.instance }));
    });
  }

  held(color: Color): Instance[] {
    return (this.heldMembers.get(color) ?? []).map((s) => ({ ...s.instance }));
  }

  stopHeld(color: Color): Promise<void> {
    return this.serial(color, () => this.doStopHeld(color));
  }

  /** Stop the colour's current instances (a failed candidate) and make the held ones its instances again. */
  restoreHeld(color: Color): Promise<Instance[]> {
    return this.serial(color, async () => {
      const held = this.heldMembers.get(color);
      if (held === undefined) return this.instances(color);
      await this.doStop(color);
      this.heldMembers.delete(color);
      for (const sup of held) sup.held = false;
      this.members.set(color, held);
      this.log.info({ color, restored: held.map((s) => s.instance.id) }, 'held instances are the colour\'s instances again');
      this.emit('instances-changed', color, this.instances(color));
      return this.instances(color);
    });
  }

  setAutoRestart(color: Color, on: boolean): void {
    this.autoRestart.set(color, on);
    for (const sup of this.members.get(color) ?? []) {
      if (on && !sup.running) this.scheduleRestart(sup);
      if (!on && sup.restartTimer !== null) {
        clearTimeout(sup.restartTimer);
        sup.restartTimer = null;
      }
    }
  }

  async detach(): Promise<void> {
    this.detached = true;
    for (const sup of this.allSupervised()) {
      this.clearTimers(sup);
      // The instances keep running (own process group, log file descriptors); we just stop listening.
      sup.child?.removeAllListeners('exit');
    }
  }

  /** Whether the instance's process is currently running (false while it is down after a crash). */
  isRunning(id: string): boolean {
    return this.find(id)?.running ?? false;
  }

  /**
   * A process needs its release directory, and it must exist before anything changes: the one
   * asked for, else `releaseDir` with the version filled in. Never a default such as the working
   * directory (issue 16: a forgotten --path deployed the config directory).
   */
  checkRelease(p: string | null, version: string): string | null {
    const fromTemplate = !p && this.opts.releaseDir !== undefined;
    const dir = p || (this.opts.releaseDir?.replaceAll('{version}', version) ?? null);
    if (!dir) {
      throw new CutoverError('CUTOVER_ERR_RELEASE_PATH', 'the process provider needs the release directory: pass --path DIR, or set environments.process.releaseDir (e.g. "./releases/{version}") in the config', { details: { field: 'path' } });
    }
    // Relative to what? The daemon's working directory is not the caller's (the CLI resolves
    // --path before sending it): through the API a relative path would silently name another
    // directory (issue #15).
    if (!path.isAbsolute(dir)) {
      throw new CutoverError('CUTOVER_ERR_RELEASE_PATH', `release directory ${quote(dir)} is relative: send an absolute path (the daemon does not know your working directory); nothing was changed`, { details: { field: 'path' } });
    }
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      const origin = fromTemplate ? ` (environments.process.releaseDir for ${version})` : '';
      throw new CutoverError('CUTOVER_ERR_RELEASE_PATH', `release directory ${shorten(dir, 256)}${origin} does not exist or is not a directory; nothing was changed`, { details: { field: 'path', path: dir.length > 256 ? `${dir.slice(0, 256)}…` : dir } });
    }
    return dir;
  }

  /** The instance's last unplanned exit, or null if it has not crashed since it was started or adopted. */
  lastExit(id: string): ExitInfo | null {
    const info = this.find(id)?.lastExit;
    return info ? { ...info } : null;
  }

  /** The last `lines` lines of the instance's log file (stdout and stderr); [] when there is none. */
  async logTail(id: string, lines = 50): Promise<string[]> {
    if (!INSTANCE_ID.test(id)) throw new CutoverError('CUTOVER_ERR_NOT_FOUND', `no instance ${JSON.stringify(id)}`);
    let fh;
    try {
      fh = await open(this.logPath(id), 'r');
    } catch {
      return [];
    }
    try {
      const { size } = await fh.stat();
      const length = Math.min(size, LOG_TAIL_MAX_BYTES);
      const buf = Buffer.alloc(length);
      await fh.read(buf, 0, length, size - length);
      const all = buf.toString('utf8').split(/\r?\n/);
      if (all.at(-1) === '') all.pop();
      // When we cut into the file, the first line is probably partial: drop it.
      if (length < size) all.shift();
      return all.slice(-lines);
    } finally {
      await fh.close();
    }
  }

  /** Path of an instance's log file. */
  logPath(id: string): string {
    return path.join(this.stateDir, 'logs', `${id}.log`);
  }

  // ── start / stop ────────────────────────────────────────────────────────────────────────

  private async doStart(color: Color, release: Release, given?: readonly number[]): Promise<Instance[]> {
    this.assertAttached();
    const dir = await checkReleaseDir(release);
    // Slots 0…n-1, or the lowest ones the held instances do not use (ids and log files stay distinct).
    const heldSlots = new Set((this.heldMembers.get(color) ?? []).map((s) => s.instance.index));
    const slots: number[] = given !== undefined ? [...given] : [];
    if (given !== undefined && (given.some((i) => !Number.isInteger(i) || i < 0 || heldSlots.has(i)) || new Set(given).size !== given.length)) {
      throw new CutoverError('CUTOVER_ERR_PROVISION', `could not start ${color}: slots ${JSON.stringify(given)} must be distinct whole numbers ≥ 0 not used by held instances; nothing was changed`, { details: { color } });
    }
    // Never duplicates: whatever this colour runs now goes first (a held set stays: see hold()).
    if (this.members.has(color)) await this.doStop(color);
    await mkdir(path.join(this.stateDir, 'logs'), { recursive: true });

    for (let index = 0; given === undefined && slots.length < this.opts.instances; index++) if (!heldSlots.has(index)) slots.push(index);
    const members: Supervised[] = [];
    this.members.set(color, members);
    try {
      for (const index of slots) {
        const port = await pickFreePort(this.host, this.reservedPorts());
        const sup = newSupervised({
          id: `${color}-${index}`, color, index, version: release.version,
          host: this.host, port, pid: null, path: dir, startedAt: Date.now(),
        });
        members.push(sup);
        this.spawnInto(sup);
      }
    } catch (err) {
      // Never orphans: take down what did start before reporting.
      await this.doStop(color);
      if (err instanceof CutoverError) throw err;
      throw new CutoverError('CUTOVER_ERR_PROVISION', `could not start ${color}: ${(err as Error).message}`, { cause: err, details: { color, version: release.version } });
    }
    this.log.info({ color, version: release.version, pids: members.map((s) => s.instance.pid) }, 'instances started');
    this.emit('instances-changed', color, this.instances(color));
    return this.instances(color);
  }

  private async doStop(color: Color): Promise<void> {
    const members = this.members.get(color);
    if (members === undefined) return;
    for (const sup of members) {
      sup.retired = true;
      this.clearTimers(sup);
    }
    await Promise.all(members.map((sup) => this.terminate(sup)));
    this.members.delete(color);
    this.log.info({ color }, 'instances stopped');
    this.emit('instances-changed', color, []);
  }

  private async doStopHeld(color: Color): Promise<void> {
    const held = this.heldMembers.get(color);
    if (held === undefined) return;
    for (const sup of held) {
      sup.retired = true;
      this.clearTimers(sup);
    }
    await Promise.all(held.map((sup) => this.terminate(sup)));
    this.heldMembers.delete(color);
    this.log.info({ color, stopped: held.map((s) => s.instance.id) }, 'held instances stopped');
  }

  /** SIGTERM to the process group, SIGKILL after the grace period. */
  private async terminate(sup: Supervised): Promise<void> {
    const { pid, id } = sup.instance;
    if (pid === null || !sup.running) return; // a crashed instance's group was killed when it exited
    sendSignal(pid, 'SIGTERM', true);
    if (!(await this.waitGone(sup, this.stopGraceMs))) {
      this.log.warn({ instance: id, pid, graceMs: this.stopGraceMs }, 'instance ignored SIGTERM; sending SIGKILL');
      sendSignal(pid, 'SIGKILL', true);
      if (!(await this.waitGone(sup, KILL_WAIT_MS))) this.log.error({ instance: id, pid }, 'process group still present after SIGKILL');
    }
    sup.running = false;
  }

  /** Until the leader has exited and nothing of its process group is left (forked helpers included). */
  private async waitGone(sup: Supervised, ms: number): Promise<boolean> {
    const pid = sup.instance.pid as number;
    const deadline = Date.now() + ms;
    for (;;) {
      const leaderGone = sup.child !== null
        ? sup.child.exitCode !== null || sup.child.signalCode !== null // set once Node has reaped it
        : !(await isAlive(pid, sup.startTime));
      if (leaderGone && !groupExists(pid)) return true;
      if (Date.now() >= deadline) return false;
      await sleep(STOP_POLL_MS);
    }
  }

  private spawnInto(sup: Supervised): void {
    const inst = sup.instance;
    const fd = openSync(this.logPath(inst.id), 'a', 0o600);
    let child: ChildProcess;
    try {
      writeSync(fd, `[cutover ${new Date().toISOString()}] starting ${inst.id} version=${inst.version} port=${inst.port}\n`);
      // `exec` makes the command itself the group leader, so the pid we record is the app's.
      // detached: own process group (and session), so a daemon kill -9 or terminal ^C does not
      // take the instances down and one group signal reaches everything the command forked.
      child = spawn('/bin/sh', ['-c', `exec ${this.opts.command}`], {
        cwd: inst.path ?? undefined,
        env: this.envFor(inst),
        detached: true,
        // File descriptors, not pipes: output keeps flowing to the log after the daemon dies.
        stdio: ['ignore', fd, fd],
      });
    } finally {
      closeSync(fd); // the child has its own copy
    }
    child.on('error', (err) => this.log.error({ instance: inst.id, err }, 'spawn failed'));
    if (child.pid === undefined) {
      throw new CutoverError('CUTOVER_ERR_PROVISION', `could not spawn ${inst.id} (${this.opts.command})`, { details: { instance: inst.id } });
    }
    child.unref(); // supervision must not keep the daemon alive on its own
    child.once('exit', (code, signal) => {
      if (sup.child === child) this.onChildExit(sup, code, signal);
    });
    sup.child = child;
    sup.startTime = null;
    sup.running = true;
    inst.pid = child.pid;
    inst.startedAt = Date.now();
  }

  private envFor(inst: Instance): Record<string, string> {
    // An allow-list, not the daemon's whole environment: CUTOVER_TOKEN and other secrets of the
    // daemon never reach the application (issue #15).
    const env = inheritedEnv(process.env, { inherit: this.opts.inheritEnv, secrets: this.opts.secrets });
    Object.assign(env, this.opts.env ?? {});
    Object.assign(env, {
      PORT: String(inst.port),
      CUTOVER_COLOR: inst.color,
      CUTOVER_VERSION: inst.version,
      CUTOVER_INSTANCE: String(inst.index),
      // Our mark: adoption reads it back from /proc/<pid>/environ to tell our processes from
      // an unrelated one that got a recorded pid after reuse.
      CUTOVER_STATE_DIR: this.stateDir,
    });
    return env;
  }

  // ── crashes and restarts ────────────────────────────────────────────────────────────────

  private onChildExit(sup: Supervised, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.detached || sup.retired) return; // a requested stop: terminate() is watching
    this.markExited(sup, code, signal);
  }

  private markExited(sup: Supervised, code: number | null, signal: string | null): void {
    const inst = sup.instance;
    const now = Date.now();
    sup.running = false;
    sup.child = null;
    this.clearTimers(sup);
    // The leader is gone but anything it forked may still hold the port: clear the group.
    // A group id is not reused while any member lives, so this reaches only our leftovers; the
    // one gap is an empty group whose id was taken by a new session leader in the moments since
    // the exit (our child: reaped just now; adopted: within one poll interval) — accepted.
    if (inst.pid !== null) sendSignal(inst.pid, 'SIGKILL', true);
    sup.lastExit = { code, signal, at: now, uptimeMs: now - inst.startedAt };
    appendFile(this.logPath(inst.id), `[cutover ${new Date(now).toISOString()}] ${inst.id} pid ${inst.pid} exited code=${code} signal=${signal}\n`).catch(() => {});
    this.log.warn({ color: inst.color, version: inst.version, instance: inst.id, pid: inst.pid, code, signal }, 'instance exited');
    this.emit('instance-exit', { ...inst }, { code, signal });
    if (this.restartsOn(sup)) this.scheduleRestart(sup);
  }

  private scheduleRestart(sup: Supervised): void {
    if (sup.restartTimer !== null || !this.canRestart(sup)) return;
    // A crash after a long healthy run is a new incident, not part of a crash loop.
    if ((sup.lastExit?.uptimeMs ?? 0) >= this.backoff.resetAfterMs) sup.attempt = 0;
    sup.attempt += 1;
    const delayMs = Math.min(this.backoff.initialMs * 2 ** (sup.attempt - 1), this.backoff.maxMs);
    this.log.info({ instance: sup.instance.id, attempt: sup.attempt, delayMs }, 'restart scheduled');
    sup.restartTimer = setTimeout(() => {
      sup.restartTimer = null;
      void this.restart(sup, delayMs);
    }, delayMs);
    sup.restartTimer.unref();
  }

  private canRestart(sup: Supervised): boolean {
    return !this.detached && !sup.retired && !sup.running && this.restartsOn(sup);
  }

  /** A held instance is a warm standby: always restarted. Others follow their colour's setting. */
  private restartsOn(sup: Supervised): boolean {
    return sup.held || this.autoRestart.get(sup.instance.color) === true;
  }

  private async restart(sup: Supervised, delayMs: number): Promise<void> {
    if (!this.canRestart(sup)) return;
    const inst = sup.instance;
    try {
      // Same port when we can: the route table and health checker already know it.
      inst.port = (await probePort(this.host, inst.port)) ?? (await pickFreePort(this.host, this.reservedPorts(sup)));
      if (!this.canRestart(sup)) return; // stopped or detached while we probed
      this.spawnInto(sup);
    } catch (err) {
      this.log.error({ instance: inst.id, err }, 'restart failed; will retry');
      sup.lastExit = { code: null, signal: null, at: Date.now(), uptimeMs: 0 };
      this.scheduleRestart(sup);
      return;
    }
    this.log.info({ color: inst.color, version: inst.version, instance: inst.id, pid: inst.pid, port: inst.port, attempt: sup.attempt }, 'instance restarted');
    this.emit('instance-restart', { ...inst }, { attempt: sup.attempt, delayMs });
    // The pid (and maybe the port) changed: state must record it for adoption and routing.
    if (sup.held) this.emit('held-changed', inst.color, this.held(inst.color));
    else this.emit('instances-changed', inst.color, this.instances(inst.color));
  }

  // ── adoption ────────────────────────────────────────────────────────────────────────────

  private async doAdopt(color: Color, recorded: Instance[]): Promise<Instance[]> {
    this.assertAttached();
    if ((this.members.get(color)?.length ?? 0) > 0) {
      throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `cannot adopt ${color}: this provider already runs it`);
    }
    const ours = await this.findOwnLeaders(color);
    const adopted: Supervised[] = [];
    const taken = new Set<number>();
    for (const rec of recorded) {
      const found = rec.pid === null ? undefined : ours.get(rec.pid);
      if (rec.color !== color || found === undefined) {
        // Dead, or the pid now belongs to someone else: forget it, never signal it.
        this.log.info({ instance: rec.id, pid: rec.pid }, 'recorded instance is gone or not ours; dropped');
        continue;
      }
      if (found.env.get('CUTOVER_INSTANCE') !== String(rec.index) || found.env.get('CUTOVER_VERSION') !== rec.version || taken.has(rec.index)) {
        this.log.warn({ instance: rec.id, pid: rec.pid }, 'recorded pid is ours but does not match the record; stopping it');
        continue; // stays in `ours` and is stopped below
      }
      ours.delete(found.pid);
      taken.add(rec.index);
      // The process's own PORT is the truth if the record is stale.
      const port = Number(found.env.get('PORT') ?? rec.port);
      const sup = newSupervised({ ...rec, port });
      sup.startTime = found.startTime;
      sup.running = true;
      adopted.push(sup);
    }
    // Ours but claimed by no record (e.g. the daemon died between a restart and saving its
    // pid): stop it, so nothing runs that we do not track.
    const strays = [...ours.values()].map((p) => {
      const sup = newSupervised({
        id: `${color}-${p.env.get('CUTOVER_INSTANCE')}`, color, index: -1, version: p.env.get('CUTOVER_VERSION') ?? '',
        host: this.host, port: 0, pid: p.pid, path: null, startedAt: 0,
      });
      sup.startTime = p.startTime;
      sup.running = true;
      sup.retired = true;
      return sup;
    });
    if (strays.length > 0) this.log.warn({ color, pids: strays.map((s) => s.instance.pid) }, 'stopping untracked instances');
    await Promise.all(strays.map((s) => this.terminate(s)));

    adopted.sort((a, b) => a.instance.index - b.instance.index);
    if (adopted.length > 0) this.members.set(color, adopted);
    for (const sup of adopted) this.pollAdopted(sup);
    this.log.info({ color, adopted: adopted.map((s) => s.instance.pid), recorded: recorded.length }, 'adoption done');
    const changed = adopted.length !== recorded.length || adopted.some((s) => recorded.find((r) => r.id === s.instance.id)?.port !== s.instance.port);
    if (changed) this.emit('instances-changed', color, this.instances(color));
    return this.instances(color);
  }

  /**
   * Group leaders carrying our state-dir mark for this colour. Children an instance forked
   * inherit its environment too, but they are not group leaders and go with their group.
   */
  private async findOwnLeaders(color: Color): Promise<Map<number, FoundProcess>> {
    const found = new Map<number, FoundProcess>();
    const pids = await listPids();
    if (pids.length === 0) this.log.warn('/proc is not readable: cannot verify recorded instances, none will be adopted');
    for (const pid of pids) {
      if (pid === process.pid) continue;
      const env = await readEnviron(pid);
      if (env?.get('CUTOVER_STATE_DIR') !== this.stateDir || env.get('CUTOVER_COLOR') !== color) continue;
      const st = await readStat(pid);
      if (st === null || st.state === 'Z' || st.pgrp !== pid) continue;
      found.set(pid, { pid, env, startTime: st.startTime });
    }
    return found;
  }

  /** Adopted processes are not our children (no 'exit' event): watch them by polling /proc. */
  private pollAdopted(sup: Supervised): void {
    sup.pollTimer = setTimeout(async () => {
      sup.pollTimer = null;
      if (this.detached || sup.retired || !sup.running || sup.child !== null) return;
      const alive = await isAlive(sup.instance.pid as number, sup.startTime);
      if (this.detached || sup.retired || !sup.running || sup.child !== null) return;
      if (alive) this.pollAdopted(sup);
      else this.markExited(sup, null, null);
    }, this.adoptedPollMs);
    sup.pollTimer.unref();
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────────────

  private serial<T>(color: Color, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(color) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.queues.set(color, next.catch(() => {}));
    return next;
  }

  private assertAttached(): void {
    if (this.detached) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', 'process provider is detached (daemon shutting down)');
  }

  private allSupervised(): Supervised[] {
    return [...this.members.values(), ...this.heldMembers.values()].flat();
  }

  private find(id: string): Supervised | undefined {
    return this.allSupervised().find((s) => s.instance.id === id);
  }

  /** Ports our instances hold, or will take back on restart. */
  private reservedPorts(except?: Supervised): Set<number> {
    return new Set(this.allSupervised().filter((s) => s !== except).map((s) => s.instance.port));
  }

  private clearTimers(sup: Supervised): void {
    if (sup.restartTimer !== null) clearTimeout(sup.restartTimer);
    if (sup.pollTimer !== null) clearTimeout(sup.pollTimer);
    sup.restartTimer = null;
    sup.pollTimer = null;
  }
}

function newSupervised(instance: Instance): Supervised {
  return {
    instance: { ...instance }, child: null, startTime: null, running: false, retired: false, held: false,
    attempt: 0, restartTimer: null, pollTimer: null, lastExit: null,
  };
}

/** The release directory, absolute; refused before anything is spawned when it is not a directory. */
async function checkReleaseDir(release: Release): Promise<string> {
  if (release.path === null) {
    throw new CutoverError('CUTOVER_ERR_RELEASE_PATH', `release ${release.version} has no directory; the process provider needs one (deploy --path)`, { details: { version: release.version } });
  }
  const dir = path.resolve(release.path);
  let st;
  try {
    st = await stat(dir);
  } catch (err) {
    throw new CutoverError('CUTOVER_ERR_RELEASE_PATH', `release directory ${dir} does not exist or is unreadable`, { cause: err, details: { path: dir, version: release.version } });
  }
  if (!st.isDirectory()) {
    throw new CutoverError('CUTOVER_ERR_RELEASE_PATH', `release path ${dir} is not a directory`, { details: { path: dir, version: release.version } });
  }
  return dir;
}

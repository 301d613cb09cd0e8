/**
 * Runs HAProxy (master-worker mode, `-W`) for the engine: starts it, or attaches to the one a
 * previous Cutover daemon left running (its admin socket answers), reloads it (SIGUSR2 to the
 * master, listeners handed over, no connection refused), notices when it dies and says so.
 *
 * HAProxy runs detached in its own process group with its output in `haproxy.log`, so that it
 * outlives a crash or an upgrade of the daemon and traffic keeps flowing meanwhile.
 *
 * Owns: the HAProxy process. Must never: decide what to route (the engine writes the config
 * before every start or reload), or kill an HAProxy it did not start or attach to.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CutoverError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { HAProxyFiles } from './config.ts';
import { RuntimeApi } from './runtime.ts';

/** How long a starting or reloading HAProxy gets to answer on its admin socket. */
export const HAPROXY_START_TIMEOUT_MS = 10_000;
/** How often an attached HAProxy (not our child) is checked for life. */
export const HAPROXY_WATCH_INTERVAL_MS = 250;
/** Grace for a soft stop (SIGUSR1) before SIGTERM. */
export const HAPROXY_STOP_GRACE_MS = 5_000;

export interface SupervisorOptions {
  binary: string;
  files: HAProxyFiles;
  logger: Logger;
}

/**
 * Events: `exit` (pid, reason) when the HAProxy master went away without `stop()`.
 */
export class HAProxySupervisor extends EventEmitter {
  readonly api: RuntimeApi;
  readonly #o: SupervisorOptions;
  #child: ChildProcess | null = null;
  #masterPid: number | null = null;
  #watch: NodeJS.Timeout | null = null;
  #stopping = false;

  constructor(o: SupervisorOptions) {
    super();
    this.#o = o;
    this.api = new RuntimeApi(o.files.socket);
  }

  get masterPid(): number | null {
    return this.#masterPid;
  }

  /** Checks the config file with `haproxy -c`; throws with HAProxy's own words when it is refused. */
  async check(): Promise<void> {
    const r = await runCapture(this.#o.binary, ['-c', '-q', '-f', this.#o.files.config]);
    if (r.code === 127) {
      throw new CutoverError('CUTOVER_ERR_CONFIG', `router.engine is "haproxy" but ${this.#o.binary} cannot be run (${r.out.trim()}); install HAProxy 2.4 or newer or set router.haproxy.binary`, { details: { field: 'router.haproxy.binary' } });
    }
    if (r.code !== 0) {
      throw new CutoverError('CUTOVER_ERR_CONFIG', `HAProxy refused the configuration Cutover wrote (${this.#o.files.config}): ${lastLines(r.out, 5)}`);
    }
  }

  /**
   * Attaches to a running HAProxy of ours (its admin socket answers and its master is alive) and
   * reloads it with the current config; else starts one. Resolves when the worker answers.
   * Returns how it came to run.
   */
  async start(): Promise<'started' | 'attached'> {
    this.#stopping = false;
    const pid = this.#readMasterPid();
    if (pid !== null && pidAlive(pid) && (await this.api.alive())) {
      this.#masterPid = pid;
      this.#watchPid();
      await this.reload();
      this.#o.logger.info({ pid }, 'attached to the running HAProxy');
      return 'attached';
    }
    await this.check();
    const log = openSync(`${this.#o.files.dir}/haproxy.log`, 'a', 0o600);
    const child = spawn(this.#o.binary, ['-W', '-db', '-f', this.#o.files.config, '-S', `${this.#o.files.masterSocket},mode,600`], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.#child = child;
    child.unref();
    const spawned = new Promise<never>((_, reject) => {
      child.once('error', (err) => reject(new CutoverError('CUTOVER_ERR_CONFIG', `could not run HAProxy (${this.#o.binary}): ${err.message}`, { cause: err })));
    });
    child.once('exit', (code, signal) => {
      if (this.#child === child) this.#child = null;
      if (this.#masterPid === child.pid) this.#masterPid = null;
      if (!this.#stopping) this.emit('exit', child.pid, signal ? `killed by ${signal}` : `exited with code ${code}`);
    });
    this.#masterPid = child.pid ?? null;
    await Promise.race([spawned, this.#waitAnswering(null)]);
    this.#o.logger.info({ pid: child.pid }, 'HAProxy started');
    return 'started';
  }

  /** Re-reads the config in a new worker (seamless: listeners are handed over). */
  async reload(): Promise<void> {
    const pid = this.#masterPid;
    if (pid === null) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', 'HAProxy is not running');
    await this.check();
    const before = await this.#workerPid();
    process.kill(pid, 'SIGUSR2');
    await this.#waitAnswering(before);
  }

  /** Soft-stops HAProxy (connections finish up to the grace), then SIGTERM. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#watch) clearInterval(this.#watch);
    this.#watch = null;
    const pid = this.#masterPid;
    if (pid === null || !pidAlive(pid)) return;
    try { process.kill(pid, 'SIGUSR1'); } catch { return; }
    const deadline = Date.now() + HAPROXY_STOP_GRACE_MS;
    while (pidAlive(pid) && Date.now() < deadline) await sleep(50);
    if (pidAlive(pid)) {
      try { process.kill(-pid, 'SIGTERM'); } catch { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
      const hard = Date.now() + 2_000;
      while (pidAlive(pid) && Date.now() < hard) await sleep(50);
    }
    this.#masterPid = null;
  }

  /** Leaves HAProxy running (a daemon upgrade); the next daemon attaches to it. */
  detach(): void {
    this.#stopping = true;
    if (this.#watch) clearInterval(this.#watch);
    this.#watch = null;
  }

  #readMasterPid(): number | null {
    try {
      const n = Number(readFileSync(this.#o.files.pidFile, 'utf8').trim().split('\n')[0]);
      return Number.isInteger(n) && n > 1 ? n : null;
    } catch {
      return null;
    }
  }

  /** An attached master is not our child: look at it every HAPROXY_WATCH_INTERVAL_MS. */
  #watchPid(): void {
    if (this.#watch) clearInterval(this.#watch);
    this.#watch = setInterval(() => {
      const pid = this.#masterPid;
      if (pid === null || this.#stopping || pidAlive(pid)) return;
      clearInterval(this.#watch!);
      this.#watch = null;
      this.#masterPid = null;
      this.emit('exit', pid, 'no longer running');
    }, HAPROXY_WATCH_INTERVAL_MS);
    this.#watch.unref();
  }

  async #workerPid(): Promise<number | null> {
    try {
      const m = /^Pid: (\d+)/m.exec(await this.api.exec('show info', 1_000));
      return m ? Number(m[1]) : null;
    } catch {
      return null;
    }
  }

  /** Waits until a worker other than `notPid` answers on the admin socket. */
  async #waitAnswering(notPid: number | null): Promise<void> {
    const deadline = Date.now() + HAPROXY_START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const w = await this.#workerPid();
      if (w !== null && w !== notPid) return;
      if (this.#masterPid !== null && !pidAlive(this.#masterPid)) break;
      await sleep(25);
    }
    const log = existsSync(`${this.#o.files.dir}/haproxy.log`) ? readFileSync(`${this.#o.files.dir}/haproxy.log`, 'utf8') : '';
    throw new CutoverError('CUTOVER_ERR_INTERNAL', `HAProxy did not answer on ${this.#o.files.socket} within ${HAPROXY_START_TIMEOUT_MS} ms: ${lastLines(log, 5)}`);
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (exited, not yet reaped by its parent) still answers signal 0.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}

function runCapture(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    c.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    c.on('error', (err) => resolve({ code: 127, out: err.message }));
    c.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

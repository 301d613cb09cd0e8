/**
 * Cutover under test, two ways: the bare router in its own process (bench/router-server.ts,
 * swapped over IPC), and the whole daemon (`cutover up` with the static provider pointing at the
 * origin's blue and green server blocks), driven through the real admin API.
 *
 * Owns: starting both, deploying two releases so a warm standby exists, rollback timing.
 * Must never: reach into the daemon other than through its admin API.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClient } from '../src/api/client.ts';
import type { MirrorSpec, RouteTable } from '../src/router/route-table.ts';
import type { DeploymentRecord } from '../src/store/types.ts';
import type { Colour, OriginPorts } from './peers.ts';
import { BIN, binNodeFlags, forkChild, freePort, nowMs, run, schedMs, sleep, spawnChild, stopChild, waitForPort, withCompileCache } from './procs.ts';
import type { RouterCommand, RouterReply } from './router-server.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROUTER_SERVER = path.join(HERE, 'router-server.ts');
/** A fixed token for the benchmark daemon (bound to loopback, gone at the end of the run). */
const BENCH_TOKEN = 'cutover-bench-token-not-secret';
/** Time for `cutover up` to say it is up, and for a deployment to finish. */
const DAEMON_START_TIMEOUT_MS = 30_000;
const DEPLOY_TIMEOUT_MS = 60_000;
/** One page, the size of a small SQLite WAL append. */
const FSYNC_PROBE_BLOCK = Buffer.alloc(4096, 1);

/** Forks bench/router-server.ts with the bin's Node.js flags and compile cache; resolves once it listens. */
async function launchRouter(workers = 1): Promise<{ child: ChildProcess; port: number }> {
  const child = forkChild(ROUTER_SERVER, [], { execArgv: binNodeFlags(), env: { ...withCompileCache(), BENCH_ROUTER_WORKERS: String(workers) } });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: RouterReply) => (m.type === 'ready' ? resolve(m.port) : reject(new Error(`router: unexpected ${m.type}`))));
    child.once('exit', (code) => reject(new Error(`router process exited with ${code} before it was ready`)));
  });
  return { child, port };
}

let warming: Promise<void> | null = null;

/**
 * Fills the compile cache before the measured processes start, as a first run of `cutover` does
 * for its users, so that neither the router nor the daemon loads Node's type stripper (about
 * 30 MB of RSS): throw-away children with the same flags, environment and entry modules,
 * `cutover --version` (bin/cutover.js → src/cli/main.ts, which imports every module `cutover up`
 * loads at start) and a router process, started and stopped. Once per run.
 */
export function warmCompileCache(): Promise<void> {
  warming ??= (async () => {
    const env: NodeJS.ProcessEnv = { ...withCompileCache(), CUTOVER_LOG_LEVEL: 'warn' };
    const version = await run(process.execPath, [...binNodeFlags(), BIN, '--version'], DAEMON_START_TIMEOUT_MS, { env });
    if (version.code !== 0) throw new Error(`cutover --version exited with ${version.code}:\n${version.stderr}`);
    const router = await launchRouter();
    await stopChild(router.child); // exits through process.exit, which writes the cache
  })();
  return warming;
}

/** The bare router in a child process. */
export class RouterProcess {
  readonly child: ChildProcess;
  readonly port: number;
  #revision = 0;

  private constructor(child: ChildProcess, port: number) {
    this.child = child;
    this.port = port;
  }

  /** Runs as `cutover` does: with the bin's Node.js flags and a warm compile cache. */
  static async start(o: { workers?: number } = {}): Promise<RouterProcess> {
    await warmCompileCache();
    const { child, port } = await launchRouter(o.workers ?? 1);
    return new RouterProcess(child, port);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Routes live traffic to the origin's `colour` server block; resolves with the in-process swap time. */
  swap(colour: Colour, origin: OriginPorts, mirror: MirrorSpec | null = null): Promise<number> {
    this.#revision++;
    const o: Colour = colour === 'blue' ? 'green' : 'blue';
    const table: RouteTable = {
      revision: this.#revision,
      live: { color: colour, version: colour === 'blue' ? 'v1' : 'v2', targets: [{ id: `${colour}-0`, host: '127.0.0.1', port: origin[colour] }] },
      // With mirroring (bench/mirror.ts), the other colour is the candidate copies go to.
      preview: mirror === null ? null : { color: o, version: o === 'blue' ? 'v1' : 'v2', targets: [{ id: `${o}-0`, host: '127.0.0.1', port: origin[o] }] },
      mirror,
    };
    return new Promise((resolve) => {
      const onMessage = (m: RouterReply) => {
        if (m.type !== 'swapped') return;
        this.child.off('message', onMessage);
        resolve(m.ms);
      };
      this.child.on('message', onMessage);
      this.child.send({ type: 'swap', table } satisfies RouterCommand);
    });
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

export interface RollbackTiming {
  /** From sending POST /api/v1/rollback to having the whole response, measured by the caller. */
  apiMs: number;
  /** The controller's own `ms` (decision to route swap in force, persisted first). */
  controllerMs: number;
  restarted: boolean;
  live: Colour;
  /** Epoch ms when the call was sent and answered. */
  startedAt: number;
  endedAt: number;
  /** During the call, the daemon's event-loop thread was on a CPU for runMs and runnable but waiting for a CPU for waitMs. */
  daemonRunMs: number;
  daemonWaitMs: number;
}

/** `cutover up` as a child process with the static provider on the origin's blue and green. */
export class Daemon {
  readonly child: ChildProcess;
  readonly livePort: number;
  readonly client: AdminClient;
  readonly stateDir: string;

  private constructor(child: ChildProcess, livePort: number, client: AdminClient, stateDir: string) {
    this.child = child;
    this.livePort = livePort;
    this.client = client;
    this.stateDir = stateDir;
  }

  /** `router`: more lines under `router:` (e.g. `  engine: haproxy`). */
  static async start(dir: string, origin: OriginPorts, o: { router?: string[] } = {}): Promise<Daemon> {
    const ports = { live: await freePort(), preview: await freePort(), admin: await freePort() };
    writeFileSync(path.join(dir, 'cutover.yaml'), [
      'app: bench',
      'router:',
      `  listen: 127.0.0.1:${ports.live}`,
      `  preview: 127.0.0.1:${ports.preview}`,
      '  drainTimeout: 10s',
      ...(o.router ?? []),
      'admin:',
      `  listen: 127.0.0.1:${ports.admin}`,
      'stateDir: .cutover',
      'environments:',
      '  provider: static',
      '  static:',
      `    blue: [127.0.0.1:${origin.blue}]`,
      `    green: [127.0.0.1:${origin.green}]`,
      'health:',
      '  path: /health',
      '  interval: 500ms',
      '  timeout: 2s',
      'standby:',
      '  keepFor: 30m',
      '',
    ].join('\n'));
    const env: NodeJS.ProcessEnv = { ...withCompileCache(), CUTOVER_TOKEN: BENCH_TOKEN, CUTOVER_LOG_LEVEL: 'warn' };
    delete env.CUTOVER_ADMIN_URL;
    await warmCompileCache();
    // The bin's shebang flags, which `node BIN` would not read.
    const child = spawnChild(process.execPath, [...binNodeFlags(), BIN, 'up'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`cutover up did not come up within ${DAEMON_START_TIMEOUT_MS} ms:\n${out}`)), DAEMON_START_TIMEOUT_MS);
      const onData = (d: Buffer) => {
        out += d.toString();
        if (out.includes('is up')) { clearTimeout(timer); resolve(); }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`cutover up exited with ${code}:\n${out}`)); });
    });
    // Keep reading its output so a full pipe never blocks it; warnings go to our stderr.
    child.stdout!.removeAllListeners('data');
    child.stdout!.resume();
    child.stderr!.removeAllListeners('data');
    child.stderr!.on('data', (d: Buffer) => process.stderr.write(`  [cutover up] ${d}`));
    await waitForPort(ports.live, child, 'cutover router');
    const client = new AdminClient({ baseUrl: `http://127.0.0.1:${ports.admin}`, token: BENCH_TOKEN, actor: 'bench', timeoutMs: 30_000 });
    return new Daemon(child, ports.live, client, path.join(dir, '.cutover'));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /**
   * The processes that serve and account for this daemon's traffic: the controller (`cutover up`)
   * and its router process (`cutover router`, detached since issue 10, so not in the controller's
   * process group; its worker threads are threads of that process). From the daemon's own status
   * (`routers[].pid`), read at each call: a replaced router is counted, not a stale pid.
   */
  async pids(): Promise<number[]> {
    const status = await this.client.call<{ routers?: { pid?: number }[] }>('GET', '/status');
    const routers = (status.routers ?? []).map((r) => r.pid).filter((p): p is number => typeof p === 'number' && p !== this.pid);
    if (routers.length === 0) throw new Error('cutover up reports no router process in its status (routers[].pid): the daemon row would count the controller alone');
    return [this.pid, ...routers];
  }

  /** Deploys `version` (static provider: the targets already run it) and waits until it finished. */
  async deploy(version: string): Promise<DeploymentRecord> {
    const { deployment } = await this.client.call<{ deployment: DeploymentRecord }>('POST', '/deployments', { version });
    const deadline = Date.now() + DEPLOY_TIMEOUT_MS;
    for (;;) {
      const { deployment: rec } = await this.client.call<{ deployment: DeploymentRecord }>('GET', `/deployments/${encodeURIComponent(deployment.id)}`);
      if (rec.finishedAt !== null) {
        if (rec.status !== 'succeeded') throw new Error(`deploy ${version} ended ${rec.status}: ${rec.error?.message ?? ''}`);
        return rec;
      }
      if (Date.now() > deadline) throw new Error(`deploy ${version} did not finish within ${DEPLOY_TIMEOUT_MS} ms (phase ${rec.phase})`);
      await sleep(100);
    }
  }

  /** POST /api/v1/rollback, timed from the call to the complete response. */
  async rollback(): Promise<RollbackTiming> {
    const s0 = schedMs(this.pid);
    const startedAt = nowMs();
    const res = await this.client.call<{ ms: number; restarted: boolean; live: { color: Colour } }>('POST', '/rollback', { reason: 'benchmark' });
    const endedAt = nowMs();
    const s1 = schedMs(this.pid);
    return {
      apiMs: endedAt - startedAt, controllerMs: res.ms, restarted: res.restarted, live: res.live.color, startedAt, endedAt,
      daemonRunMs: s0 && s1 ? s1.runMs - s0.runMs : Number.NaN,
      daemonWaitMs: s0 && s1 ? s1.waitMs - s0.waitMs : Number.NaN,
    };
  }

  /**
   * One 4 KiB write + fdatasync next to the daemon's SQLite files: the state store commits with
   * synchronous=FULL before every swap, so this bounds what the disk adds to a rollback.
   */
  async fsyncProbe(): Promise<number> {
    const fh = await open(path.join(this.stateDir, 'bench-fsync-probe'), 'w');
    try {
      const t0 = performance.now();
      await fh.write(FSYNC_PROBE_BLOCK, 0, FSYNC_PROBE_BLOCK.length, 0);
      await fh.datasync();
      return performance.now() - t0;
    } finally {
      await fh.close();
    }
  }

  async stop(): Promise<void> {
    await this.client.close().catch(() => {});
    await stopChild(this.child);
  }
}

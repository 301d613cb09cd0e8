/**
 * A fleet of controllers for tests and the bench (issue 11): a real 3-member etcd, two static
 * shop colours, `cutover router` processes in fleet mode and several `cutover up --id NAME
 * --admin ADDR` processes, each with its own directory (state dir) and admin port. `stop()`
 * ends everything it started, also when a test failed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { BIN, TEST_TOKEN, freePort, freePorts, serveShop, tempDir, waitFor, waitForHealth, writeConfig, type Ports } from '../helpers.ts';
import { startEtcdCluster, type EtcdCluster } from '../etcd-cluster.ts';

export interface ControllerProc {
  id: string;
  dir: string;
  adminUrl: string;
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

export interface RouterProc { id: string; child: ChildProcess; liveUrl: string; output: () => string }

export interface StatusBody {
  live: { color: string; version: string } | null;
  deployment: { id: string; phase: string; status: string } | null;
  router: { revision: number };
  routers: { id: string; revision: number; stale: boolean }[];
  leader?: { id: string; admin: string } | null;
  controllers?: { id: string; leader: boolean; self: boolean }[];
}

export interface ControllerFleet {
  etcd: EtcdCluster;
  prefix: string;
  controllers: Map<string, ControllerProc>;
  routers: RouterProc[];
  /** Start (or start again) controller `id`; resolves when its admin API answers. */
  startController: (id: string, env?: NodeJS.ProcessEnv) => Promise<ControllerProc>;
  /** GET /api/v1/<path> on a controller. */
  api: <T>(id: string, method: 'GET' | 'POST', p: string, body?: unknown) => Promise<{ status: number; body: T }>;
  status: (id: string) => Promise<StatusBody>;
  /** The leader as every running controller sees it, once they agree and it is up; `not`: another than this one. */
  waitLeader: (o?: { not?: string; timeoutMs?: number }) => Promise<string>;
  kv: () => Etcd3;
  stop: () => Promise<void>;
}

export function fleetYaml(o: { ports: Ports; endpoints: string[]; blue: number; green: number; prefix: string; leaseTtl?: string; ackTimeout?: string }): string {
  return [
    'app: shop',
    `router: { listen: 127.0.0.1:${o.ports.live}, preview: 127.0.0.1:${o.ports.preview}, drainTimeout: 2s }`,
    `admin: { listen: 127.0.0.1:${o.ports.admin} }`,
    `environments: { provider: static, static: { blue: [127.0.0.1:${o.blue}], green: [127.0.0.1:${o.green}] } }`,
    'health: { interval: 100ms, timeout: 500ms }',
    'fleet:',
    `  etcd: { endpoints: [${o.endpoints.join(', ')}], prefix: ${o.prefix} }`,
    `  leaseTtl: ${o.leaseTtl ?? '2s'}`,
    `  ackTimeout: ${o.ackTimeout ?? '3s'}`,
  ].join('\n');
}

export async function startControllerFleet(o: { routers?: number; leaseTtl?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ControllerFleet> {
  const etcd = await startEtcdCluster(3);
  const { dir, cleanup } = tempDir('cutover-ha-');
  const blue = await freePort();
  const green = await freePort();
  const shops = [serveShop(blue, 'blue'), serveShop(green, 'green')];
  const prefix = `/cutover-ha-${process.pid}-${Date.now()}`;
  const controllers = new Map<string, ControllerProc>();
  const routers: RouterProc[] = [];
  const client = new Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
  const adminPorts = new Map<string, number>();
  // One shared config shape; each process its own directory (state dir) and ports.
  const base = async (sub: string): Promise<{ d: string; ports: Ports }> => {
    const d = path.join(dir, sub);
    mkdirSync(d, { recursive: true });
    const ports = await freePorts();
    writeConfig(d, fleetYaml({ ports, endpoints: etcd.endpoints, blue, green, prefix, leaseTtl: o.leaseTtl }));
    return { d, ports };
  };
  const stop = async () => {
    if (process.env.CUTOVER_TEST_DEBUG) for (const c of controllers.values()) process.stderr.write(`\n===== ${c.id} =====\n${c.output().slice(-6000)}\n`);
    for (const c of controllers.values()) { try { process.kill(c.child.pid!, 'SIGCONT'); } catch { /* gone */ } c.child.kill('SIGKILL'); }
    for (const r of routers) r.child.kill('SIGKILL');
    for (const s of shops) s.kill('SIGKILL');
    client.close();
    await etcd.stop();
    cleanup();
  };
  try {
    await waitForHealth([blue, green]);
    let firstAdmin = '';
    const startController = async (id: string, env: NodeJS.ProcessEnv = {}): Promise<ControllerProc> => {
      const d = path.join(dir, id);
      if (!adminPorts.has(id)) {
        const b = await base(id);
        adminPorts.set(id, b.ports.admin);
      }
      const port = adminPorts.get(id)!;
      const child = spawn(process.execPath, [BIN, 'up', '--id', id, '--admin', `127.0.0.1:${port}`], { cwd: d, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_LOG_LEVEL: 'info', ...o.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-200_000); });
      child.stderr!.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-200_000); });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })));
      const c: ControllerProc = { id, dir: d, adminUrl: `http://127.0.0.1:${port}`, child, output: () => out, exited };
      controllers.set(id, c);
      await waitFor(() => out.includes('is up') || child.exitCode !== null, { what: `controller ${id} up`, timeoutMs: 30_000 });
      if (child.exitCode !== null) throw new Error(`controller ${id} exited with ${child.exitCode}: ${out}`);
      firstAdmin ||= c.adminUrl;
      return c;
    };
    const api = async <T>(id: string, method: 'GET' | 'POST', p: string, body?: unknown): Promise<{ status: number; body: T }> => {
      const c = controllers.get(id)!;
      const res = await fetch(`${c.adminUrl}/api/v1${p}`, {
        method, headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(60_000),
      });
      return { status: res.status, body: (await res.json()) as T };
    };
    const status = async (id: string) => (await api<StatusBody>(id, 'GET', '/status')).body;
    const running = () => [...controllers.values()].filter((c) => c.child.exitCode === null && c.child.signalCode === null);
    const waitLeader = (w: { not?: string; timeoutMs?: number } = {}) => waitFor(async () => {
      // A controller other than the one ruled out (paused or dying) is asked.
      const seen = await Promise.all(running().filter((c) => c.id !== w.not).map((c) => status(c.id).then((s) => s.leader?.id ?? null, () => null)));
      const l = seen[0];
      if (!l || l === w.not || seen.some((x) => x !== l)) return null;
      return l;
    }, { what: `a leader${w.not ? ` other than ${w.not}` : ''}`, timeoutMs: w.timeoutMs ?? 20_000, intervalMs: 50 });
    // Routers first, with the first controller's admin URL for their records (followers forward them).
    const ctlPort = (await base('c1')).ports.admin;
    adminPorts.set('c1', ctlPort);
    for (let i = 0; i < (o.routers ?? 2); i++) {
      const { d, ports } = await base(`r${i}`);
      const id = `r${i}`;
      const child = spawn(process.execPath, [BIN, 'router', '--id', id], { cwd: d, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_ADMIN_URL: `http://127.0.0.1:${ctlPort}`, CUTOVER_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-50_000); });
      child.stderr!.on('data', (b: Buffer) => { out = (out + b.toString()).slice(-50_000); });
      routers.push({ id, child, liveUrl: `http://127.0.0.1:${ports.live}`, output: () => out });
      await waitFor(() => out.includes('is up') || child.exitCode !== null, { what: `router ${id} up`, timeoutMs: 30_000 });
      if (child.exitCode !== null) throw new Error(`router ${id} exited: ${out}`);
    }
    return { etcd, prefix, controllers, routers, startController, api, status, waitLeader, kv: () => client, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Every key under the prefix that a controller writes (route table, state, leader, token hash) with its mod revision. */
export async function controllerKeys(client: Etcd3, prefix: string): Promise<Map<string, string>> {
  const res = await client.getAll().prefix(`${prefix}/shop/`).exec();
  const out = new Map<string, string>();
  for (const kv of res.kvs) {
    const k = kv.key.toString().slice(`${prefix}/shop/`.length);
    if (k.startsWith('routers/') || k.startsWith('acks/') || k.startsWith('drains/') || k.startsWith('controllers/')) continue;
    out.set(k, kv.mod_revision);
  }
  return out;
}

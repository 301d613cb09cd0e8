/** Shared test helpers: temp dirs, free ports, config files, the CLI and the daemon as real processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { pickFreePort } from '../src/environments/ports.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = path.join(ROOT, 'bin', 'cutover.js');
export const SHOP_V1 = path.join(ROOT, 'examples', 'shop', 'v1');
export const SHOP_V2 = path.join(ROOT, 'examples', 'shop', 'v2');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');
export const TEST_TOKEN = 'test-token-0123456789';

export function tempDir(prefix = 'cutover-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function freePort(): Promise<number> {
  return pickFreePort('127.0.0.1', new Set());
}

export interface Ports { live: number; preview: number; admin: number }

export async function freePorts(): Promise<Ports> {
  return { live: await freePort(), preview: await freePort(), admin: await freePort() };
}

/** A cutover.yaml for tests: fast health checks, short timeouts. `extra` is appended verbatim. */
export function configYaml(ports: Ports, o: { instances?: number; startTimeout?: string; drainTimeout?: string; keepFor?: string; extra?: string } = {}): string {
  return [
    'app: test',
    'router:',
    `  listen: 127.0.0.1:${ports.live}`,
    `  preview: 127.0.0.1:${ports.preview}`,
    `  drainTimeout: ${o.drainTimeout ?? '3s'}`,
    'admin:',
    `  listen: 127.0.0.1:${ports.admin}`,
    'stateDir: .cutover',
    'environments:',
    '  provider: process',
    '  process:',
    '    command: node server.js',
    `    instances: ${o.instances ?? 2}`,
    `    startTimeout: ${o.startTimeout ?? '10s'}`,
    '    stopTimeout: 2s',
    'health:',
    '  path: /health',
    '  interval: 100ms',
    '  timeout: 1s',
    'standby:',
    `  keepFor: ${o.keepFor ?? '10m'}`,
    o.extra ?? '',
  ].join('\n');
}

/**
 * A cutover.yaml for the static provider: one target per colour (e.g. `serveShop` ports), health
 * checked every 100 ms. `router`/`admin`: more keys for those inline maps (`drainTimeout: 1s`).
 */
export function staticConfigYaml(ports: Ports, blue: number, green: number, o: { router?: string; admin?: string } = {}): string {
  const more = (keys: string | undefined) => (keys === undefined ? '' : `, ${keys}`);
  return [
    `router: { listen: 127.0.0.1:${ports.live}, preview: 127.0.0.1:${ports.preview}${more(o.router)} }`,
    `admin: { listen: 127.0.0.1:${ports.admin}${more(o.admin)} }`,
    `environments: { provider: static, static: { blue: [127.0.0.1:${blue}], green: [127.0.0.1:${green}] } }`,
    'health: { interval: 100ms, timeout: 500ms }',
  ].join('\n');
}

export function writeConfig(dir: string, text: string): string {
  const file = path.join(dir, 'cutover.yaml');
  writeFileSync(file, text);
  return file;
}

export interface CliResult { code: number; stdout: string; stderr: string }

/** Run the real `cutover` binary. */
export function cli(args: string[], o: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: o.cwd, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`cutover ${args.join(' ')} timed out\n${stdout}\n${stderr}`)); }, o.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

export interface DaemonProcess { child: ChildProcess; output: () => string; stop: (signal?: NodeJS.Signals) => Promise<void> }

/** `cutover up` as a real child process; resolves once it says it is up. */
export function startDaemonProcess(cwd: string, env: NodeJS.ProcessEnv = {}): Promise<DaemonProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'up'], { cwd, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('is up')) {
        resolve({
          child,
          output: () => out,
          stop: (signal = 'SIGTERM') => new Promise<void>((res) => {
            if (child.exitCode !== null || child.signalCode !== null) { res(); return; }
            child.once('exit', () => res());
            child.kill(signal);
          }).then(() => {
            // `cutover up` runs its router as a process that outlives it (by design): a test that
            // kills the daemon hard also ends its router. SIGTERM stops the router by itself.
            if (signal === 'SIGKILL') killAll(routersOf(path.join(cwd, '.cutover')));
          }),
        });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('exit', (code) => reject(new Error(`cutover up exited early with ${code}:\n${out}`)));
    setTimeout(() => reject(new Error(`cutover up did not come up:\n${out}`)), 20_000).unref();
  });
}

export async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await request(url, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  return { status: res.statusCode, body: await res.body.text() };
}

export async function getJson<T = Record<string, unknown>>(url: string): Promise<T> {
  const r = await get(url);
  return JSON.parse(r.body) as T;
}

/** Processes whose environment carries CUTOVER_STATE_DIR=stateDir: the instances a daemon runs. */
export function instancesOf(stateDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (env.includes(`CUTOVER_STATE_DIR=${stateDir}`)) pids.push(Number(entry));
    } catch {
      // gone or not ours to read
    }
  }
  return pids;
}

export function killAll(pids: number[]): void {
  for (const p of pids) {
    try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ }
  }
}

export async function waitFor<T>(fn: () => T | Promise<T>, o: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (o.timeoutMs ?? 10_000);
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${o.what ?? 'condition'}`);
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 50));
  }
}

/** The sample shop run by "something else": a target for the static provider, answering as `color`. */
export function serveShop(port: number, color: string): ChildProcess {
  return spawn(process.execPath, [path.join(SHOP_V1, 'server.js')], { env: { ...process.env, PORT: String(port), CUTOVER_COLOR: color }, stdio: 'ignore' });
}

/** Resolves once every loopback port answers GET /health with 200. */
export async function waitForHealth(ports: number[], what = 'targets up'): Promise<void> {
  await waitFor(async () => (await Promise.all(ports.map((p) => get(`http://127.0.0.1:${p}/health`).then((r) => r.status === 200, () => false)))).every(Boolean), { what });
}

/** `cutover router` processes a daemon started for this stateDir (they carry its settings in their environment). */
export function routersOf(stateDir: string): number[] {
  const pids: number[] = [];
  const mark = `"stateDir":${JSON.stringify(stateDir)}`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (env.some((e) => e.startsWith('CUTOVER_ROUTER_SETTINGS=') && e.includes(mark))) pids.push(Number(entry));
    } catch {
      // gone or not ours to read
    }
  }
  return pids;
}

export function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

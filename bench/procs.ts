/**
 * Child processes of the benchmark. Every server (nginx, HAProxy, the Cutover router and daemon,
 * the load generator) is our own child, started in its own process group on loopback, and is
 * stopped at the end of the run or on any error — never a system service, never a process we did
 * not start.
 *
 * Owns: spawning, stopping (SIGTERM to the child's group, then SIGKILL), free ports, /proc reads.
 * Must never: signal anything but the groups of children it started.
 */
import { spawn, fork, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pickFreePort } from '../src/environments/ports.ts';

/** The `cutover` executable. */
export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'cutover.js');

/** How long a child gets after SIGTERM before SIGKILL. */
export const STOP_GRACE_MS = 5_000;
/** How long a server gets to accept connections after start. */
export const START_TIMEOUT_MS = 15_000;

const children = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * Spawns a server in its own process group (detached), so that stopping it also stops its
 * workers (nginx, HAProxy master-worker) without touching anything else.
 */
export function spawnChild(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], ...opts, detached: true });
  child.on('error', () => { /* reported through exit/wait helpers */ });
  return track(child);
}

/**
 * Forks a TypeScript module of ours with an IPC channel, in its own process group. `execArgv`
 * (the child's Node.js flags) defaults to ours.
 */
export function forkChild(modulePath: string, args: string[] = [], opts: { env?: NodeJS.ProcessEnv; execArgv?: string[] } = {}): ChildProcess {
  const child = fork(modulePath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true, env: opts.env ?? process.env, execArgv: opts.execArgv ?? process.execArgv });
  return track(child);
}

/**
 * The Node.js flags `cutover` runs with, read from the shebang line of bin/cutover.js
 * (`#!/usr/bin/env -S node --max-semi-space-size=8` gives `['--max-semi-space-size=8']`): the
 * one place they are written. A process started as `node FLAGS… bin/cutover.js` or forked with
 * them as execArgv runs as the installed command does.
 */
export function binNodeFlags(bin = BIN): string[] {
  const first = readFileSync(bin, 'utf8').split('\n', 1)[0];
  const words = first.startsWith('#!') ? first.slice(2).trim().split(/\s+/) : [];
  const node = words.findIndex((w) => path.basename(w) === 'node');
  if (node === -1) throw new Error(`${bin}: the first line does not run node: ${first}`);
  const flags = words.slice(node + 1);
  const notFlag = flags.find((f) => !f.startsWith('-'));
  if (notFlag !== undefined) throw new Error(`${bin}: unexpected ${notFlag} among the node flags of its first line`);
  return flags;
}

/**
 * `env` with NODE_COMPILE_CACHE set to the directory the bin's `module.enableCompileCache()`
 * uses: the one NODE_COMPILE_CACHE already names, else <tmpdir>/node-compile-cache (Node's
 * default). A process started with it reuses the type-stripped sources cached there, and never
 * loads Node's type stripper, as `cutover` does.
 */
export function withCompileCache(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, NODE_COMPILE_CACHE: env.NODE_COMPILE_CACHE || path.join(os.tmpdir(), 'node-compile-cache') };
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try { child.kill(signal); } catch { /* already gone */ }
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGTERM to the child's group; SIGKILL to the group after the grace period. */
export async function stopChild(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (exited(child)) {
    signalGroup(child, 'SIGKILL'); // leftover workers of a master that died, if any
    return;
  }
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signalGroup(child, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
  // Workers of a master that exited first (they share the group).
  signalGroup(child, 'SIGKILL');
}

export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

/** Last resort on process exit (synchronous): kill every group we started. */
export function killAllSync(): void {
  for (const c of children) signalGroup(c, 'SIGKILL');
}

/** Resolves with the child's exit code; rejects if it does not exit within timeoutMs. */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (exited(child)) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`process ${child.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code) => { clearTimeout(timer); resolve(code); });
  });
}

/** Runs a command to completion and returns its output (for `nginx -s reload`, `wrk`, versions). */
export function run(cmd: string, args: string[], timeoutMs = 60_000, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env }));
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} ${args.join(' ')} timed out after ${timeoutMs} ms`)); }, timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

export function freePort(): Promise<number> {
  return pickFreePort('127.0.0.1', new Set());
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, child: ChildProcess | null, what: string, timeoutMs = START_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child !== null && exited(child)) throw new Error(`${what} exited (code ${child.exitCode}, signal ${child.signalCode}) before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Epoch milliseconds with sub-millisecond resolution, comparable across our processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** VmRSS and VmHWM (peak RSS since start) of one process, in KiB; null once it is gone. */
export function memoryKb(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    if (rss === null || hwm === null) return null;
    return { rss: Number(rss[1]), hwm: Number(hwm[1]) };
  } catch {
    return null;
  }
}

/** The process and its direct children (an nginx or HAProxy master and its workers). */
export function processAndChildren(pid: number): number[] {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return [pid, ...(kids === '' ? [] : kids.split(/\s+/).map(Number))];
  } catch {
    return [pid];
  }
}

/** Summed RSS of `pids` in KiB (processes already gone count 0). */
export function rssOf(pids: number[]): number {
  let sum = 0;
  for (const p of pids) sum += memoryKb(p)?.rss ?? 0;
  return sum;
}

/** Samples the summed RSS of `pids()` (asked anew each time) while `during` runs; the peak in KiB. */
export async function peakRssOf<T>(pids: () => number[], during: Promise<T>, everyMs = 100): Promise<{ result: T; peakKb: number }> {
  let peak = 0;
  const sample = () => { peak = Math.max(peak, rssOf(pids())); };
  sample();
  const timer = setInterval(sample, everyMs);
  try {
    const result = await during;
    sample();
    return { result, peakKb: peak };
  } finally {
    clearInterval(timer);
  }
}

/** User + system CPU time of one process (all its threads), in clock ticks; null once it is gone. */
export function cpuTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start at index 2 (state).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of proc(5))
  } catch {
    return null;
  }
}

/**
 * The machine's CPU ticks since boot, all cores (/proc/stat): in all, and stolen (time the
 * hypervisor ran other guests while this one had work: a virtual machine on a busy host).
 */
export function machineTicks(): { total: number; steal: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
}

/** Summed CPU ticks of a process and its direct children. */
export function groupCpuTicks(pid: number): number {
  let sum = 0;
  for (const p of processAndChildren(pid)) sum += cpuTicks(p) ?? 0;
  return sum;
}

/**
 * Scheduler statistics of a process's main thread (the Node.js event loop), from
 * /proc/<pid>/schedstat: time on a CPU and time runnable but waiting for one, in ms.
 */
export function schedMs(pid: number): { runMs: number; waitMs: number } | null {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { runMs: run / 1e6, waitMs: wait / 1e6 };
  } catch {
    return null;
  }
}

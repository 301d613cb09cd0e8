/**
 * `npm run bench`: Cutover's router against nginx and HAProxy on this machine, in one run, and
 * the results as ratios to those peers (docs/benchmarks.md, and the same tables on stdout).
 *
 *   node bench/run.ts                  full run (about 3 minutes), rewrites docs/benchmarks.md
 *   node bench/run.ts --quick          a few seconds per part, 5 switches; writes no file unless --out
 *   node bench/run.ts --out FILE       write the Markdown report to FILE instead
 *   node bench/run.ts --json FILE      also write every number as JSON (for tests and tracking)
 *   node bench/run.ts --only http2     only HTTP/2 vs HTTP/1.1 on the TLS listener (bench/http2.ts)
 *
 * 1. Throughput/latency: wrk (2 threads, 50 keep-alive connections) against the origin directly,
 *    the bare router, the whole daemon, nginx and HAProxy; peak RSS and CPU per request.
 * 2. Switch under load: 50 keep-alive connections plus slow requests, N colour switches: Cutover
 *    through the admin API (rollback between two warm colours), nginx by `-s reload`, HAProxy by
 *    a master-worker reload (as is, and with `option idle-close-on-response`); every failed
 *    request counted.
 * 3. Rollback time: POST /api/v1/rollback with a warm standby, idle and under load.
 *
 * Every server is our own child process on loopback ports, stopped at the end and on errors.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Daemon, RouterProcess, type RollbackTiming } from './cutover.ts';
import type { LoadCommand, LoadReply, LoadResult } from './loadgen.ts';
import { HAPROXY, HAProxy, NGINX, Nginx, haproxyConfig, nginxProxyConfig, originConfig, other, startSlowBackend, type Colour, type OriginPorts } from './peers.ts';
import { binNodeFlags, forkChild, freePort, groupCpuTicks, killAllSync, memoryKb, nowMs, peakRssDuring, processAndChildren, run, sleep, stopAll, waitExit } from './procs.ts';
import { fmt, int, max, mean, median, met, mb, ms, percentile, ratio, table } from './report.ts';
import { WRK, runWrk, wrkFailures, type WrkResult } from './wrk.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const DEFAULT_OUT = path.join(ROOT, 'docs', 'benchmarks.md');

// ── targets (from the issue) ──
/** Router throughput at least half of nginx's. */
const TARGET_RPS_VS_NGINX = 0.5;
/** Router p99 at most twice nginx's. */
const TARGET_P99_VS_NGINX = 2;
/** Router peak RSS under load below 150 MB (10^6 bytes; /proc reports KiB). */
const TARGET_RSS_MB = 150;
const TARGET_RSS_KIB = (TARGET_RSS_MB * 1e6) / 1024;
/** Rollback completes within 100 ms of the API call. */
const TARGET_ROLLBACK_MS = 100;

interface Plan {
  quick: boolean;
  wrk: { threads: number; connections: number };
  /** Throughput rounds; odd rounds run the targets in reverse order, so drift hits all alike. */
  rounds: number;
  /** Whole seconds (wrk takes no fractions). */
  warmupS: number[];
  durationS: number;
  switches: number;
  switchIntervalMs: number;
  /** Steady load before the first switch, and after the last one before stopping. */
  switchWarmMs: number;
  settleMs: number;
  load: { connections: number; slowConnections: number; slowMs: number; timeoutMs: number };
  rollbacks: number;
  rollbackGapMs: number;
}

const FULL: Plan = {
  quick: false,
  wrk: { threads: 2, connections: 50 },
  rounds: 2,
  warmupS: [2, 1],
  durationS: 5,
  switches: 20,
  switchIntervalMs: 1_000,
  switchWarmMs: 1_500,
  settleMs: 1_500,
  load: { connections: 50, slowConnections: 10, slowMs: 2_500, timeoutMs: 10_000 },
  rollbacks: 20,
  rollbackGapMs: 150,
};

const QUICK: Plan = {
  ...FULL,
  quick: true,
  rounds: 1,
  warmupS: [1],
  durationS: 3,
  switches: 5,
  switchWarmMs: 1_000,
  settleMs: 1_000,
  rollbacks: 5,
};

// ── setup ──

interface Bench {
  dir: string;
  origin: OriginPorts;
  originNginx: Nginx;
  router: RouterProcess;
  daemon: Daemon;
  daemonLive: Colour;
  nginx: Nginx;
  nginxPort: number;
  nginxColour: Colour;
  haproxy: HAProxy;
  haproxyPort: number;
  haproxyColour: Colour;
}

async function setup(dir: string): Promise<Bench> {
  const origin: OriginPorts = { blue: await freePort(), green: await freePort(), slow: await freePort() };
  await startSlowBackend(origin.slow);
  const originNginx = await Nginx.start(dir, 'origin', originConfig(dir, origin), origin.green);
  const router = await RouterProcess.start();
  await router.swap('blue', origin);
  const nginxPort = await freePort();
  const nginx = await Nginx.start(dir, 'nginx-proxy', nginxProxyConfig(dir, nginxPort, origin.blue), nginxPort);
  const haproxyPort = await freePort();
  const haproxy = await HAProxy.start(dir, haproxyConfig(dir, haproxyPort, origin.blue), haproxyPort);
  const daemonDir = path.join(dir, 'daemon');
  mkdirSync(daemonDir);
  const daemon = await Daemon.start(daemonDir, origin);
  // Two releases, so the first is the warm standby: v1 on blue, then v2 on green.
  await daemon.deploy('v1');
  await daemon.deploy('v2');
  return { dir, origin, originNginx, router, daemon, daemonLive: 'green', nginx, nginxPort, nginxColour: 'blue', haproxy, haproxyPort, haproxyColour: 'blue' };
}

// ── 1. throughput and latency ──

type TargetKey = 'direct' | 'router' | 'daemon' | 'nginx' | 'haproxy';

interface Target {
  key: TargetKey;
  label: string;
  url: string;
  /** Process to measure (RSS, CPU); null for the origin itself. */
  pid: number | null;
  withChildren: boolean;
}

interface RoundResult {
  round: number;
  wrk: WrkResult;
  peakRssKb: number;
  /** CPU time of the proxy per 1,000 requests, ms. */
  cpuMsPer1k: number;
}

interface TargetResult {
  key: TargetKey;
  label: string;
  rounds: RoundResult[];
  rps: number;
  p50Ms: number;
  p99Ms: number;
  failed: number;
  peakRssKb: number;
  idleRssKb: number;
  cpuMsPer1k: number;
}

function rssKb(pid: number, withChildren: boolean): number {
  let sum = 0;
  for (const p of withChildren ? processAndChildren(pid) : [pid]) sum += memoryKb(p)?.rss ?? 0;
  return sum;
}

async function throughput(b: Bench, plan: Plan, clkTck: number): Promise<TargetResult[]> {
  const targets: Target[] = [
    { key: 'direct', label: 'origin directly (no proxy)', url: `http://127.0.0.1:${b.origin.blue}/`, pid: null, withChildren: false },
    { key: 'router', label: 'Cutover router (bare)', url: `http://127.0.0.1:${b.router.port}/`, pid: b.router.pid, withChildren: false },
    { key: 'daemon', label: 'Cutover daemon (`cutover up`)', url: `http://127.0.0.1:${b.daemon.livePort}/`, pid: b.daemon.pid, withChildren: false },
    { key: 'nginx', label: 'nginx proxy_pass', url: `http://127.0.0.1:${b.nginxPort}/`, pid: b.nginx.pid, withChildren: true },
    { key: 'haproxy', label: 'HAProxy', url: `http://127.0.0.1:${b.haproxyPort}/`, pid: b.haproxy.pid, withChildren: true },
  ];
  const rounds = new Map<TargetKey, RoundResult[]>(targets.map((t) => [t.key, []]));
  const idle = new Map<TargetKey, number>(targets.map((t) => [t.key, t.pid === null ? Number.NaN : rssKb(t.pid, t.withChildren)]));
  for (let round = 0; round < plan.rounds; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const warm = plan.warmupS[round] ?? plan.warmupS[plan.warmupS.length - 1];
      process.stdout.write(`  round ${round + 1}/${plan.rounds}: ${t.label} … `);
      await runWrk(t.url, { ...plan.wrk, durationS: warm });
      const cpu0 = t.pid === null ? 0 : groupCpuTicks(t.pid);
      const measured = runWrk(t.url, { ...plan.wrk, durationS: plan.durationS });
      const { result, peakKb } = t.pid === null ? { result: await measured, peakKb: Number.NaN } : await peakRssDuring(t.pid, t.withChildren, measured);
      const cpuMs = t.pid === null ? Number.NaN : ((groupCpuTicks(t.pid) - cpu0) * 1000) / clkTck;
      rounds.get(t.key)!.push({ round: round + 1, wrk: result, peakRssKb: peakKb, cpuMsPer1k: cpuMs / (result.requests / 1000) });
      console.log(`${int(result.rps)} req/s, p50 ${ms(result.p50Ms)}, p99 ${ms(result.p99Ms)}${wrkFailures(result) > 0 ? `, ${wrkFailures(result)} failed` : ''}`);
    }
  }
  return targets.map((t) => {
    const rs = rounds.get(t.key)!;
    return {
      key: t.key,
      label: t.label,
      rounds: rs,
      rps: mean(rs.map((r) => r.wrk.rps)),
      p50Ms: mean(rs.map((r) => r.wrk.p50Ms)),
      p99Ms: mean(rs.map((r) => r.wrk.p99Ms)),
      failed: rs.reduce((a, r) => a + wrkFailures(r.wrk), 0),
      peakRssKb: max(rs.map((r) => r.peakRssKb)),
      idleRssKb: idle.get(t.key)!,
      cpuMsPer1k: mean(rs.map((r) => r.cpuMsPer1k)),
    };
  });
}

// ── 2. switch under load ──

type SystemKey = 'cutover' | 'nginx' | 'haproxy' | 'haproxy-icr';

interface SwitchRecord {
  /** Epoch ms when the switch was started. */
  t: number;
  to: Colour;
  /** How long the switch command took (API round trip; `nginx -s reload`; signalling HAProxy). */
  commandMs: number;
  rollback?: RollbackTiming;
  /** Cutover only: fsync latency of the state disk, probed right after the rollback. */
  fsyncMs?: number;
}

interface SwitchResult {
  key: SystemKey;
  label: string;
  how: string;
  switches: SwitchRecord[];
  load: Omit<LoadResult, 'failures' | 'slow'> & { slow: { requests: number; ok: number } };
  /** Failures seen before the first switch (should be 0 for every system). */
  failedBeforeFirstSwitch: number;
  failedPerSwitch: number[];
  /** Fewest slow requests in flight at the moment of a switch (the drain had work to do). */
  minSlowInFlight: number;
}

async function withLoad(url: string, plan: Plan, during: () => Promise<SwitchRecord[]>): Promise<{ load: LoadResult; switches: SwitchRecord[] }> {
  const child = forkChild(path.join(HERE, 'loadgen.ts'));
  const reply = (type: LoadReply['type']) => new Promise<LoadReply>((resolve, reject) => {
    const onMessage = (m: LoadReply) => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      resolve(m);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`load generator exited with ${code}`)));
  });
  const started = reply('started');
  child.send({ type: 'start', origin: url, ...plan.load } satisfies LoadCommand);
  await started;
  await sleep(plan.switchWarmMs);
  const switches = await during();
  await sleep(plan.settleMs);
  const result = reply('result');
  child.send({ type: 'stop' } satisfies LoadCommand);
  const load = (await result) as { type: 'result' } & LoadResult;
  await waitExit(child, 10_000).catch(() => {});
  return { load, switches };
}

async function switchRepeatedly(plan: Plan, first: Colour, doSwitch: (to: Colour) => Promise<Omit<SwitchRecord, 't' | 'to'>>): Promise<SwitchRecord[]> {
  const out: SwitchRecord[] = [];
  let to = first;
  for (let i = 0; i < plan.switches; i++) {
    const t = nowMs();
    const rec = await doSwitch(to);
    out.push({ t, to, ...rec });
    to = other(to);
    const wait = t + plan.switchIntervalMs - nowMs();
    if (wait > 0) await sleep(wait);
  }
  return out;
}

function analyseSwitchRun(key: SystemKey, label: string, how: string, load: LoadResult, switches: SwitchRecord[]): SwitchResult {
  const perSwitch = switches.map(() => 0);
  let before = 0;
  for (const f of load.failures) {
    let i = -1;
    while (i + 1 < switches.length && switches[i + 1].t <= f.t) i++;
    if (i < 0) before++;
    else perSwitch[i]++;
  }
  const inFlightAt = (t: number) => load.slow.spans.filter(([s, e]) => s < t && e > t).length;
  const { failures: _f, slow, ...rest } = load;
  return {
    key, label, how, switches,
    load: { ...rest, slow: { requests: slow.requests, ok: slow.ok } },
    failedBeforeFirstSwitch: before,
    failedPerSwitch: perSwitch,
    minSlowInFlight: switches.length === 0 ? 0 : Math.min(...switches.map((s) => inFlightAt(s.t))),
  };
}

async function switching(b: Bench, plan: Plan): Promise<SwitchResult[]> {
  const results: SwitchResult[] = [];

  process.stdout.write(`  Cutover: ${plan.switches} rollbacks through the admin API under load … `);
  {
    const { load, switches } = await withLoad(`http://127.0.0.1:${b.daemon.livePort}`, plan, () =>
      switchRepeatedly(plan, other(b.daemonLive), async (to) => {
        const rb = await b.daemon.rollback();
        if (rb.live !== to) throw new Error(`rollback went to ${rb.live}, expected ${to}`);
        if (rb.restarted) throw new Error('rollback restarted the standby: it was not warm');
        b.daemonLive = rb.live;
        return { commandMs: rb.apiMs, rollback: rb, fsyncMs: await b.daemon.fsyncProbe() };
      }));
    results.push(analyseSwitchRun('cutover', 'Cutover', '`POST /api/v1/rollback` (route swap between two warm colours)', load, switches));
    console.log(`${load.failed} failed of ${int(load.requests)}`);
  }

  process.stdout.write(`  nginx: ${plan.switches} reloads under load … `);
  {
    const { load, switches } = await withLoad(`http://127.0.0.1:${b.nginxPort}`, plan, () =>
      switchRepeatedly(plan, other(b.nginxColour), async (to) => {
        const t0 = nowMs();
        await b.nginx.reload(nginxProxyConfig(b.dir, b.nginxPort, b.origin[to]));
        b.nginxColour = to;
        return { commandMs: nowMs() - t0 };
      }));
    results.push(analyseSwitchRun('nginx', 'nginx', 'rewrite `upstream`, `nginx -s reload`', load, switches));
    console.log(`${load.failed} failed of ${int(load.requests)}`);
  }

  for (const idleCloseOnResponse of [false, true]) {
    const label = idleCloseOnResponse ? 'HAProxy + `option idle-close-on-response`' : 'HAProxy';
    if (idleCloseOnResponse) {
      // Untimed reload without load, so the process soft-stopped at the first measured switch
      // already runs with the option.
      await b.haproxy.reload(haproxyConfig(b.dir, b.haproxyPort, b.origin[b.haproxyColour], { idleCloseOnResponse }));
      await sleep(1_000);
    }
    process.stdout.write(`  ${label}: ${plan.switches} reloads under load … `);
    const { load, switches } = await withLoad(`http://127.0.0.1:${b.haproxyPort}`, plan, () =>
      switchRepeatedly(plan, other(b.haproxyColour), async (to) => {
        const t0 = nowMs();
        await b.haproxy.reload(haproxyConfig(b.dir, b.haproxyPort, b.origin[to], { idleCloseOnResponse }));
        b.haproxyColour = to;
        return { commandMs: nowMs() - t0 };
      }));
    results.push(analyseSwitchRun(idleCloseOnResponse ? 'haproxy-icr' : 'haproxy', label, 'rewrite `server`, SIGUSR2 to the master (`-W` master-worker reload)', load, switches));
    console.log(`${load.failed} failed of ${int(load.requests)}`);
  }
  return results;
}

// ── 3. rollback time ──

/** Rollbacks without traffic, each followed (not overlapped) by one fsync probe of the state disk. */
async function rollbacksIdle(b: Bench, plan: Plan): Promise<{ timings: RollbackTiming[]; fsyncMs: number[] }> {
  const timings: RollbackTiming[] = [];
  const fsyncMs: number[] = [];
  for (let i = 0; i < plan.rollbacks; i++) {
    const rb = await b.daemon.rollback();
    if (rb.restarted) throw new Error('rollback restarted the standby: it was not warm');
    b.daemonLive = rb.live;
    timings.push(rb);
    fsyncMs.push(await b.daemon.fsyncProbe());
    await sleep(plan.rollbackGapMs);
  }
  return { timings, fsyncMs };
}

// ── machine ──

interface Machine {
  date: string;
  cpus: number;
  cpuModel: string;
  memGiB: number;
  kernel: string;
  node: string;
  nginx: string;
  haproxy: string;
  wrk: string;
  commit: string;
  loadBefore: number[];
  loadAfter: number[];
}

async function machine(): Promise<Machine> {
  const first = (s: string) => s.trim().split('\n')[0] ?? '';
  const [nginx, haproxy, wrk, commit, dirty] = await Promise.all([
    run(NGINX, ['-v']), run(HAPROXY, ['-v']), run(WRK, ['-v']),
    run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).catch(() => ({ stdout: '?' })),
    run('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src/router']).catch(() => ({ stdout: '' })),
  ]);
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? '?',
    memGiB: os.totalmem() / 2 ** 30,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    nginx: first(nginx.stderr || nginx.stdout).replace(/^nginx version: /, ''),
    haproxy: first(haproxy.stdout).replace(/ - https:.*$/, ''),
    wrk: first(wrk.stdout || wrk.stderr).replace(/ Copyright.*$/, ''),
    commit: `${commit.stdout.trim()}${dirty.stdout.trim() === '' ? '' : ' (with uncommitted changes in src/router)'}`,
    loadBefore: os.loadavg(),
    loadAfter: [],
  };
}

// ── report ──

interface Results {
  plan: Plan;
  machine: Machine;
  throughput: TargetResult[];
  switching: SwitchResult[];
  rollback: { idle: RollbackTiming[]; underLoad: RollbackTiming[]; fsyncIdleMs: number[]; fsyncUnderLoadMs: number[] };
  targets: { name: string; measured: string; goal: string; met: boolean }[];
}

function evaluateTargets(r: Omit<Results, 'targets'>): Results['targets'] {
  const by = (k: TargetKey) => r.throughput.find((t) => t.key === k)!;
  const nginx = by('nginx');
  const out: Results['targets'] = [];
  for (const k of ['router', 'daemon'] as const) {
    const t = by(k);
    const name = k === 'router' ? 'router' : 'daemon (router + metrics + controller)';
    out.push({ name: `${name}: throughput vs nginx`, measured: ratio(t.rps / nginx.rps), goal: `≥ ${TARGET_RPS_VS_NGINX}×`, met: t.rps / nginx.rps >= TARGET_RPS_VS_NGINX });
    out.push({ name: `${name}: p99 vs nginx`, measured: ratio(t.p99Ms / nginx.p99Ms), goal: `≤ ${TARGET_P99_VS_NGINX}×`, met: t.p99Ms / nginx.p99Ms <= TARGET_P99_VS_NGINX });
    out.push({ name: `${name}: peak RSS under load`, measured: mb(t.peakRssKb), goal: `< ${TARGET_RSS_MB} MB`, met: t.peakRssKb < TARGET_RSS_KIB });
  }
  const cut = r.switching.find((s) => s.key === 'cutover')!;
  out.push({ name: `failed requests across ${cut.switches.length} switches under load`, measured: int(cut.load.failed), goal: '0', met: cut.load.failed === 0 });
  const idle = r.rollback.idle.map((x) => x.apiMs);
  const loaded = r.rollback.underLoad.map((x) => x.apiMs);
  out.push({ name: 'rollback, API call to response (idle): max', measured: ms(max(idle)), goal: `< ${TARGET_ROLLBACK_MS} ms`, met: max(idle) < TARGET_ROLLBACK_MS });
  out.push({ name: 'rollback, API call to response (under load): max', measured: ms(max(loaded)), goal: `< ${TARGET_ROLLBACK_MS} ms`, met: max(loaded) < TARGET_ROLLBACK_MS });
  return out;
}

function renderThroughput(r: Results): string {
  const by = (k: TargetKey) => r.throughput.find((t) => t.key === k)!;
  const nginx = by('nginx');
  const haproxy = by('haproxy');
  const main = table(
    ['target', 'req/s', 'p50', 'p99', 'failed', 'RSS before load', 'peak RSS', 'CPU per 1k req', 'req/s vs nginx', 'p99 vs nginx', 'CPU/req vs nginx', 'req/s vs HAProxy', 'p99 vs HAProxy'],
    r.throughput.map((t) => [
      t.label, int(t.rps), ms(t.p50Ms), ms(t.p99Ms), int(t.failed), mb(t.idleRssKb), mb(t.peakRssKb),
      Number.isFinite(t.cpuMsPer1k) ? ms(t.cpuMsPer1k) : '–',
      ratio(t.rps / nginx.rps), ratio(t.p99Ms / nginx.p99Ms), ratio(t.cpuMsPer1k / nginx.cpuMsPer1k), ratio(t.rps / haproxy.rps), ratio(t.p99Ms / haproxy.p99Ms),
    ]),
  );
  const raw = table(
    ['round', 'target', 'requests', 'req/s', 'p50', 'p90', 'p99', 'max', 'socket errors', 'non-2xx', 'peak RSS', 'CPU per 1k req'],
    r.throughput.flatMap((t) => t.rounds.map((x) => [
      String(x.round), t.label, int(x.wrk.requests), int(x.wrk.rps), ms(x.wrk.p50Ms), ms(x.wrk.p90Ms), ms(x.wrk.p99Ms), ms(x.wrk.maxMs),
      int(x.wrk.socketErrors.connect + x.wrk.socketErrors.read + x.wrk.socketErrors.write + x.wrk.socketErrors.timeout), int(x.wrk.non2xx),
      mb(x.peakRssKb), Number.isFinite(x.cpuMsPer1k) ? ms(x.cpuMsPer1k) : '–',
    ])).sort((a, b) => Number(a[0]) - Number(b[0])),
    ['r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
  return `${main}\n\nPer round (raw wrk figures):\n\n${raw}`;
}

function renderSwitching(r: Results): string {
  const main = table(
    ['system', 'switch by', 'switches', 'requests', 'failed', 'failed per switch (mean / max)', 'slow requests completed', 'slow in flight at each switch (min)', 'answers blue / green', 'switch command (median / max)'],
    r.switching.map((s) => [
      s.label, s.how, int(s.switches.length), int(s.load.requests), int(s.load.failed),
      `${fmt(mean(s.failedPerSwitch))} / ${int(max(s.failedPerSwitch))}`,
      `${int(s.load.slow.ok)} of ${int(s.load.slow.requests)}`, int(s.minSlowInFlight),
      `${int(s.load.colours.blue ?? 0)} / ${int(s.load.colours.green ?? 0)}`,
      `${ms(median(s.switches.map((x) => x.commandMs)))} / ${ms(max(s.switches.map((x) => x.commandMs)))}`,
    ]),
    ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
  const kinds = r.switching.filter((s) => s.load.failed > 0);
  const kindTable = kinds.length === 0 ? '' : `\n\nFailures by kind:\n\n${table(
    ['system', 'failure', 'count'],
    kinds.flatMap((s) => Object.entries(s.load.byKind).sort((a, b) => b[1] - a[1]).map(([k, n]) => [s.label, k, int(n)])),
    ['l', 'l', 'r'],
  )}`;
  const before = r.switching.filter((s) => s.failedBeforeFirstSwitch > 0);
  const beforeNote = before.length === 0 ? '' : `\n\nFailures before the first switch (not caused by a switch): ${before.map((s) => `${s.label} ${s.failedBeforeFirstSwitch}`).join(', ')}.`;
  return `${main}${kindTable}${beforeNote}`;
}

function renderRollback(r: Results): string {
  const row = (label: string, xs: RollbackTiming[], fsync: number[]) => {
    const api = xs.map((x) => x.apiMs);
    const ctl = xs.map((x) => x.controllerMs);
    return [
      label, int(xs.length), ms(median(api)), ms(percentile(api, 90)), ms(max(api)), ms(median(ctl)), ms(max(ctl)),
      `${ms(median(fsync))} / ${ms(max(fsync))}`, met(max(api) < TARGET_ROLLBACK_MS),
    ];
  };
  const timings = table(
    ['condition', 'rollbacks', 'API median', 'API p90', 'API max', 'controller `ms` median', 'controller `ms` max', 'fsync probe median / max', `max < ${TARGET_ROLLBACK_MS} ms`],
    [
      row('idle (warm standby, no traffic)', r.rollback.idle, r.rollback.fsyncIdleMs),
      row(`under load (section 2: ${r.plan.load.connections} + ${r.plan.load.slowConnections} slow connections)`, r.rollback.underLoad, r.rollback.fsyncUnderLoadMs),
    ],
  );
  const all = [...r.rollback.idle, ...r.rollback.underLoad];
  const fsyncAll = [...r.rollback.fsyncIdleMs, ...r.rollback.fsyncUnderLoadMs];
  const slow = all.filter((x) => x.apiMs >= TARGET_ROLLBACK_MS).length;
  const worst = all.reduce((a, x) => (x.apiMs > a.apiMs ? x : a), all[0]);
  const where = worst === undefined ? '' : ` The slowest call took ${ms(worst.apiMs)} (controller \`ms\` ${ms(worst.controllerMs)}); meanwhile the
daemon's event-loop thread ran on a CPU for ${ms(worst.daemonRunMs)} and waited for a CPU for
${ms(worst.daemonWaitMs)} (\`/proc/<pid>/schedstat\`); for the rest it was not runnable (waiting for I/O such as the fsync, or for the
request to arrive from the client).`;
  return `${timings}

The controller's \`ms\` includes committing the new roles to SQLite (\`synchronous=FULL\`, an
fsync) before the route swap, by design (a crash must never forget which colour is live); the
API time adds the event and audit records and the HTTP round trip. The fsync probe (a 4 KiB
write + \`fdatasync\` in the daemon's state directory, right after each rollback, never
overlapping it) shows what the disk alone cost at the time. In this run ${slow} of ${all.length}
rollbacks took ${TARGET_ROLLBACK_MS} ms or more, and the slowest fsync probe took ${ms(max(fsyncAll))}.${where}`;
}

function renderTargets(r: Results): string {
  return table(['target', 'measured', 'goal', 'result'], r.targets.map((t) => [t.name, t.measured, t.goal, met(t.met)]), ['l', 'r', 'r', 'l']);
}

function roundSpread(r: Results): string {
  if (r.plan.rounds < 2) return 'This was a one-round (`--quick`) run, so no round-to-round spread was measured.';
  const parts = r.throughput.map((t) => {
    const rps = t.rounds.map((x) => x.wrk.rps);
    const spread = (Math.max(...rps) - Math.min(...rps)) / mean(rps);
    return `${t.label} ${Math.round(spread * 100)} %`;
  });
  return `In this run, throughput differed between the two rounds by ${parts.join(', ')}.`;
}

function renderMarkdown(r: Results): string {
  const m = r.machine;
  const p = r.plan;
  return `# Benchmarks

Generated by \`npm run bench\` (\`bench/run.ts\`)${p.quick ? ' **with `--quick`**' : ''} on ${m.date}; code under test: commit ${m.commit}.
Every figure below comes from this one run on this one machine; compare the ratios, not the
absolute numbers. Rerun to refresh this file (do not edit it by hand).

## Targets

${renderTargets(r)}

## Machine

- ${m.cpus} CPU cores (${m.cpuModel}), ${m.memGiB.toFixed(1)} GiB memory, ${m.kernel}
- Node.js ${m.node}; nginx ${m.nginx}; ${m.haproxy}; ${m.wrk}
- load average before the run ${m.loadBefore.map((x) => x.toFixed(2)).join(' / ')}, after ${m.loadAfter.map((x) => x.toFixed(2)).join(' / ')} (1 / 5 / 15 min)

## Method

All servers are child processes of the benchmark on loopback ports, each with its config in a
temp dir; nothing is shared with system services.

- **Origin** (the upstream of every proxy): one nginx worker answering \`blue\\n\` and
  \`green\\n\` from two server blocks with \`return 200\`, so the upstream is never the bottleneck;
  \`/slow?ms=N\` on either block is passed to a small Node.js backend that answers after N ms.
- **Cutover router**: \`Router\` from \`src/router/router.ts\` alone in its own process
  (\`bench/router-server.ts\`), an always-healthy health view, no metrics hook.
- **Cutover daemon**: \`cutover up\` (router + controller + admin API + metrics + health checks
  every 500 ms) with the \`static\` provider on the origin's blue and green blocks; v1 deployed on
  blue, then v2 on green, so blue is the warm standby.
- Router and daemon run as \`cutover\` itself does: with the Node.js flags of the shebang line of
  \`bin/cutover.js\` (\`${binNodeFlags().join(' ')}\`) and a warm compile cache (filled by
  throw-away runs of the same entry modules before the measured processes start), so neither
  loads Node's type stripper.
- **nginx** proxy: 1 worker, \`proxy_http_version 1.1\`, \`proxy_set_header Connection ""\`,
  upstream \`keepalive 64\`, access log off, \`keepalive_requests\` raised to 1,000,000 (its
  default 1,000 would close client and upstream connections that the others keep).
- **HAProxy**: \`nbthread 1\`, \`http-reuse always\`, keep-alive both sides, master-worker mode;
  in section 2 measured twice: as is, and with \`option idle-close-on-response\`, which keeps
  idle client connections of the old process open until their next answer instead of closing
  them at the reload.
- Each proxy adds \`X-Forwarded-For\`, as Cutover does.

**1. Throughput and latency.** wrk, ${p.wrk.threads} threads, ${p.wrk.connections} keep-alive connections,
\`GET /\` (5-byte body). Per target a ${p.warmupS.join(' s / ')} s warm-up (discarded), then ${p.durationS} s
measured; ${p.rounds} round${p.rounds === 1 ? '' : 's'}${p.rounds > 1 ? ", the second in reverse order so slow drift of the machine hits every target alike; req/s, p50 and p99 are the means of the rounds' figures" : ''}.
RSS before load is read just before the first warm-up. Peak RSS is the highest VmRSS from \`/proc/<pid>/status\` sampled every 100 ms during
the measured runs (for nginx and HAProxy: master + workers); V8 keeps growing its heap under
sustained allocation, so a Node.js process under load for minutes reads higher than these
${p.rounds * p.durationS} s of measured load show. CPU per 1k requests is the proxy's
user + system time over the measured run (\`/proc/<pid>/stat\`) divided by requests served: it
depends far less on how the two cores were shared than req/s does.

**2. Switch under load.** A load generator in its own process (\`bench/loadgen.ts\`, undici, no
retries) keeps ${p.load.connections} keep-alive connections busy with \`GET /\` and ${p.load.slowConnections} more with
\`/slow?ms=${p.load.slowMs}\`, so slow requests are in flight on the old colour at every switch.
After ${p.switchWarmMs / 1000} s of load, ${p.switches} switches alternate blue/green every ${p.switchIntervalMs / 1000} s,
then load runs ${p.settleMs / 1000} s more and every request still in flight is allowed to finish. A
failure is any connection error, timeout (${p.load.timeoutMs / 1000} s), non-2xx answer or an answer that
is not a colour. Failures are attributed to the switch that preceded them.

**3. Rollback time.** \`POST /api/v1/rollback\` through \`AdminClient\` (the CLI's client) with
the standby warm: the time from sending the call to the complete response, and the controller's
own \`ms\` field (decision to route swap in force, persisted first). Idle: ${p.rollbacks} rollbacks
${p.rollbackGapMs} ms apart, no traffic; under load: the ${p.switches} rollbacks of section 2.

## 1. Throughput and latency

${renderThroughput(r)}

## 2. Switch under load

${renderSwitching(r)}

## 3. Rollback time

${renderRollback(r)}

## Noise

This machine has ${m.cpus} cores, shared by the load generator, the proxy under test, the origin and,
during this run, other people's builds and tests. Absolute req/s and especially p99 move with
whatever else runs. ${roundSpread(r)} That is why every figure is a ratio to peers measured
seconds apart in the same run, why the rounds alternate order, and why CPU per request (less sensitive to
sharing) is reported next to req/s. wrk itself takes most of one core, so no proxy here reaches
what it would with dedicated cores; the single-threaded proxies (Node.js, 1 nginx worker, 1
HAProxy thread) are compared at equal parallelism. Failure counts in section 2 do not depend on
speed in the same way: a reload either races keep-alive connections or it does not.
`;
}

// ── 4. detection to rollback (bench/analysis-detection.ts, in its own process) ──

interface DetectionResult { interval: string; bound: number; max: number; median: number; withinBound: boolean; runs: { switchToRollbackMs: number; intervalEndToRollbackMs: number }[] }

async function detectionBench(runs: number): Promise<DetectionResult[]> {
  const r = await run(process.execPath, [path.join(HERE, 'analysis-detection.ts'), '--runs', String(runs)], 10 * 60_000);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.code !== 0 || !last.startsWith('{')) throw new Error(`analysis-detection failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  for (const line of r.stdout.trim().split('\n').slice(0, -1)) console.log(`  ${line}`);
  return (JSON.parse(last) as { results: DetectionResult[] }).results;
}

function renderDetection(results: DetectionResult[]): string {
  const rows = results.map((d) => {
    const tails = d.runs.map((x) => x.intervalEndToRollbackMs).sort((a, b) => a - b);
    return `| ${d.interval} | ${d.runs.length} | ${d.median} ms | ${d.max} ms | ${d.bound} ms | ${tails[Math.floor(tails.length / 2)]} ms / ${tails.at(-1)} ms | ${d.withinBound ? '**met**' : '**not met**'} |`;
  });
  return `A release answering 20 % errors under live load (200 req/s) is deployed with \`analysis\`
(\`failureLimit: 1\`); the time is from its switch to the automatic rollback being in force, against the
bound of one interval + 100 ms (\`bench/analysis-detection.ts\`, real daemon and instances).

| interval | runs | switch → rollback median | max | bound | end of failing interval → rollback (median / max) | within bound |
|---:|---:|---:|---:|---:|---:|:---|
${rows.join('\n')}
`;
}

// ── main ──

async function main(): Promise<number> {
  const { values: args } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      json: { type: 'string' },
      keep: { type: 'boolean', default: false },
      only: { type: 'string' },
    },
  });
  if (args.only === 'http2') {
    const { benchHttp2, http2Table } = await import('./http2.ts');
    process.stdout.write(`${http2Table(await benchHttp2(args.quick ? { seconds: 2, rounds: 1 } : { seconds: 6, rounds: 2 }))}\n`);
    return 0;
  }
  if (args.only !== undefined) throw new Error(`--only: expected http2, got ${args.only}`);
  const plan = args.quick ? QUICK : FULL;
  const out = args.out ?? (args.quick ? null : DEFAULT_OUT);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-bench-'));
  const clkTck = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const m = await machine();
  console.log(`Cutover benchmark${plan.quick ? ' (--quick)' : ''}: ${m.cpus} cores, Node.js ${m.node}, ${m.nginx}, ${m.haproxy}; temp dir ${dir}\n`);
  let ok = false;
  try {
    const b = await setup(dir);
    console.log('1. Throughput and latency');
    const tp = await throughput(b, plan, clkTck);
    console.log('\n2. Switch under load');
    const sw = await switching(b, plan);
    console.log('\n3. Rollback time (idle)');
    const idle = await rollbacksIdle(b, plan);
    console.log(`  ${idle.timings.length} rollbacks, API median ${ms(median(idle.timings.map((x) => x.apiMs)))}, max ${ms(max(idle.timings.map((x) => x.apiMs)))}`);
    m.loadAfter = os.loadavg();
    const partial = {
      plan, machine: m, throughput: tp, switching: sw,
      rollback: {
        idle: idle.timings,
        underLoad: sw.find((s) => s.key === 'cutover')!.switches.map((s) => s.rollback!),
        fsyncIdleMs: idle.fsyncMs,
        fsyncUnderLoadMs: sw.find((s) => s.key === 'cutover')!.switches.map((s) => s.fsyncMs!),
      },
    };
    console.log('\n4. Detection to rollback (post-switch analysis)');
    const detection = await detectionBench(plan.quick ? 2 : 5);
    const results: Results = { ...partial, targets: evaluateTargets(partial) };
    const md = renderMarkdown(results).replace('\n## Noise', `\n## 4. Detection to rollback\n\n${renderDetection(detection)}\n## Noise`);
    console.log(`\n${md}`);
    if (out !== null) {
      writeFileSync(out, md);
      console.log(`written to ${path.relative(process.cwd(), out) || out}`);
    }
    if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);
    ok = true;
    return 0;
  } finally {
    await stopAll();
    if (ok && !args.keep) rmSync(dir, { recursive: true, force: true });
    else console.error(`configs and logs kept in ${dir}`);
  }
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping every server of the benchmark`);
    stopAll().finally(() => process.exit(130));
  });
}

main().then(
  (code) => { process.exitCode = code; },
  (err: unknown) => { console.error(err instanceof Error ? err.stack : err); process.exitCode = 1; },
);

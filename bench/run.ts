/**
 * `npm run bench`: Cutover's router against nginx and HAProxy on this machine, in one run, and
 * the results as ratios to those peers (docs/benchmarks.md, and the same tables on stdout).
 *
 *   node bench/run.ts                  full run (about 15 minutes on 2 cores), rewrites docs/benchmarks.md
 *   node bench/run.ts --quick          a few seconds per part, 5 switches; writes no file unless --out
 *   node bench/run.ts --out FILE       write the Markdown report to FILE instead
 *   node bench/run.ts --json FILE      also write every number as JSON (for tests and tracking)
 *   node bench/run.ts --only http2     only HTTP/2 vs HTTP/1.1 on the TLS listener (bench/http2.ts)
 *   node bench/run.ts --only engine    only section 5, the HAProxy engine (same as `haproxy`)
 *
 * 1. Throughput/latency: wrk (2 threads, 50 keep-alive connections) against the origin directly,
 *    the bare router, the whole daemon, nginx and HAProxy; peak RSS and CPU per request.
 * 2. Switch under load: 50 keep-alive connections plus slow requests, N colour switches: Cutover
 *    through the admin API (rollback between two warm colours), nginx by `-s reload`, HAProxy by
 *    a master-worker reload (as is, and with `option idle-close-on-response`); every failed
 *    request counted.
 * 3. Rollback time: POST /api/v1/rollback with a warm standby, idle and under load.
 * 6. The data plane apart (bench/dataplane.ts): switches acknowledged by 3 fleet routers, failed
 *    requests over them, kill -9 of the controller under load. Alone: `--only dataplane`.
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
import { binNodeFlags, cpuTicks, forkChild, freePort, killAllSync, machineTicks, nowMs, peakRssOf, processAndChildren, rssOf, run, sleep, stopAll, waitExit } from './procs.ts';
import { fmt, int, max, mean, median, met, mb, ms, pct, percentile, ratio, table } from './report.ts';
import { startEngineDaemon, startSameConfigHAProxy, type EngineDaemon } from './haproxy-engine.ts';
import { AUTO_SAMPLE_LINES_PER_S } from '../src/engines/haproxy/engine.ts';
import { Pool } from 'undici';
import { WRK, runWrk, wrkFailures, type WrkResult } from './wrk.ts';
import { dataPlaneBench, renderDataPlane } from './dataplane.ts';

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
/** Router CPU per request at most twice nginx's (issue #12: the headline figure). */
const TARGET_CPU_VS_NGINX = 2;
/**
 * A measured run during which the hypervisor gave more than this share of the machine's CPU time
 * to other guests is measured again (seen here: 0-1 % on a quiet host, up to 39 % in busy spells of
 * tens of seconds, which raised nginx's CPU per request 1.6× and the router's 2.7×: a ratio
 * measured then says more about the host than about the proxy), keeping the least disturbed try.
 */
const STEAL_MAX = 0.02;
/** Runs measured again per section at most, so that a host that never quiets down still finishes. */
const STEAL_RETRIES = 20;
/** Pause before measuring a disturbed run again. */
const STEAL_PAUSE_MS = 3_000;
/** The HAProxy engine serves at least 0.95× what a bare HAProxy with the same settings serves. */
const TARGET_ENGINE_VS_HAPROXY = 0.95;

interface Plan {
  quick: boolean;
  wrk: { threads: number; connections: number };
  /** Throughput rounds; odd rounds run the targets in reverse order, so drift hits all alike. */
  rounds: number;
  /** Throughput rounds of section 5 (the HAProxy engine against its bare peers, a few % apart). */
  engineRounds: number;
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
  rounds: 4,
  engineRounds: 6,
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
  engineRounds: 1,
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
  /** The bare router with `router.workers: 2` (sections 1 and 2; `workers`). */
  router2?: RouterProcess;
  daemon?: Daemon;
  /** The daemon's controller and router process (measured together). */
  daemonPids: number[];
  daemonLive: Colour;
  nginx: Nginx;
  nginxPort: number;
  nginxColour: Colour;
  haproxy?: HAProxy;
  haproxyPort: number;
  haproxyColour: Colour;
}

/** Which parts run: everything (writes docs/benchmarks.md), or one section alone. */
type Mode = 'all' | 'haproxy' | 'workers';

async function setup(dir: string, mode: Mode): Promise<Bench> {
  const origin: OriginPorts = { blue: await freePort(), green: await freePort(), slow: await freePort() };
  await startSlowBackend(origin.slow);
  const originNginx = await Nginx.start(dir, 'origin', originConfig(dir, origin), origin.green);
  const router = await RouterProcess.start();
  await router.swap('blue', origin);
  const router2 = mode === 'haproxy' ? undefined : await RouterProcess.start({ workers: 2 });
  await router2?.swap('blue', origin);
  const nginxPort = await freePort();
  const nginx = await Nginx.start(dir, 'nginx-proxy', nginxProxyConfig(dir, nginxPort, origin.blue), nginxPort);
  const haproxyPort = await freePort();
  const haproxy = mode === 'workers' ? undefined : await HAProxy.start(dir, haproxyConfig(dir, haproxyPort, origin.blue), haproxyPort);
  let daemon: Daemon | undefined;
  if (mode === 'all') {
    const daemonDir = path.join(dir, 'daemon');
    mkdirSync(daemonDir);
    daemon = await Daemon.start(daemonDir, origin);
    // Two releases, so the first is the warm standby: v1 on blue, then v2 on green.
    await daemon.deploy('v1');
    await daemon.deploy('v2');
  }
  const daemonPids = daemon ? await daemon.pids() : [];
  return { dir, origin, originNginx, router, router2, daemon, daemonPids, daemonLive: 'green', nginx, nginxPort, nginxColour: 'blue', haproxy, haproxyPort, haproxyColour: 'blue' };
}

// ── 1. throughput and latency ──

type TargetKey = 'direct' | 'router' | 'router-w2' | 'daemon' | 'nginx' | 'haproxy' | 'haproxy-same' | 'haproxy-engine' | 'haproxy-same-every' | 'haproxy-engine-every';

interface Target {
  key: TargetKey;
  label: string;
  url: string;
  /** Processes to measure (RSS, CPU), read at each sample; empty for the origin itself. */
  pids: () => number[];
  /** Some of \`pids\` whose CPU is also reported apart (the HAProxy engine's daemon). */
  part?: () => number[];
}

interface RoundResult {
  round: number;
  wrk: WrkResult;
  peakRssKb: number;
  /** CPU time of the proxy per 1,000 requests, ms. */
  cpuMsPer1k: number;
  /** Share of the machine's CPU time stolen by the hypervisor during the kept run (0..1). */
  steal: number;
  /** Runs measured for this one (more than 1: earlier ones lost over STEAL_MAX to other guests). */
  attempts: number;
  /** CPU per 1,000 requests of the target's \`part\` alone, ms (NaN without one). */
  partCpuMsPer1k: number;
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

/** One measured wrk run of `t`: its figures, the proxy's CPU per request and the CPU stolen meanwhile. */
async function measureOnce(t: Target, plan: Plan, clkTck: number): Promise<Omit<RoundResult, 'round' | 'attempts'>> {
  const measuredPids = t.pids();
  const partPids = t.part?.() ?? [];
  const cpu0 = cpuOf(measuredPids);
  const part0 = cpuOf(partPids);
  const m0 = machineTicks();
  const measured = runWrk(t.url, { ...plan.wrk, durationS: plan.durationS });
  const { result, peakKb } = measuredPids.length === 0 ? { result: await measured, peakKb: Number.NaN } : await peakRssOf(t.pids, measured);
  const m1 = machineTicks();
  const per1k = (ticks: number) => (ticks * 1000) / clkTck / (result.requests / 1000);
  return {
    wrk: result,
    peakRssKb: peakKb,
    cpuMsPer1k: measuredPids.length === 0 ? Number.NaN : per1k(cpuOf(measuredPids) - cpu0),
    partCpuMsPer1k: partPids.length === 0 ? Number.NaN : per1k(cpuOf(partPids) - part0),
    steal: (m1.steal - m0.steal) / Math.max(1, m1.total - m0.total),
  };
}

function cpuOf(pids: number[]): number {
  let sum = 0;
  for (const p of pids) sum += cpuTicks(p) ?? 0;
  return sum;
}

const one = (pid: number) => () => [pid];
const fixed = (pids: number[]) => () => pids;
const group = (pid: number) => () => processAndChildren(pid);

function coreTargets(b: Bench): Target[] {
  return [
    { key: 'direct', label: 'origin directly (no proxy)', url: `http://127.0.0.1:${b.origin.blue}/`, pids: () => [] },
    { key: 'router', label: 'Cutover router (bare), workers = 1', url: `http://127.0.0.1:${b.router.port}/`, pids: one(b.router.pid) },
    ...(b.router2 ? [{ key: 'router-w2' as const, label: 'Cutover router (bare), workers = 2', url: `http://127.0.0.1:${b.router2.port}/`, pids: one(b.router2.pid) }] : []),
    // The controller and its router process (a detached `cutover router` since issue 10).
    ...(b.daemon ? [{ key: 'daemon' as const, label: 'Cutover daemon (`cutover up`: controller + router process)', url: `http://127.0.0.1:${b.daemon!.livePort}/`, pids: fixed(b.daemonPids) }] : []),
    { key: 'nginx', label: 'nginx proxy_pass', url: `http://127.0.0.1:${b.nginxPort}/`, pids: group(b.nginx.pid) },
    ...(b.haproxy ? [{ key: 'haproxy' as const, label: 'HAProxy', url: `http://127.0.0.1:${b.haproxyPort}/`, pids: group(b.haproxy.pid) }] : []),
  ];
}

async function throughput(targets: Target[], plan: Plan, clkTck: number): Promise<TargetResult[]> {
  const rounds = new Map<TargetKey, RoundResult[]>(targets.map((t) => [t.key, []]));
  const idle = new Map<TargetKey, number>(targets.map((t) => [t.key, t.pids().length === 0 ? Number.NaN : rssOf(t.pids())]));
  let retriesLeft = STEAL_RETRIES;
  for (let round = 0; round < plan.rounds; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const warm = plan.warmupS[round] ?? plan.warmupS[plan.warmupS.length - 1];
      process.stdout.write(`  round ${round + 1}/${plan.rounds}: ${t.label} … `);
      await runWrk(t.url, { ...plan.wrk, durationS: warm });
      let kept: RoundResult | null = null;
      for (let attempt = 1; ; attempt++) {
        const m = await measureOnce(t, plan, clkTck);
        if (kept === null || m.steal < kept.steal) kept = { round: round + 1, ...m, attempts: attempt };
        kept.attempts = attempt;
        // The origin alone is a reference, not a ratio's term: never measured again.
        if (m.steal <= STEAL_MAX || retriesLeft === 0 || t.pids().length === 0) break;
        retriesLeft--;
        process.stdout.write(`${pct(m.steal)} of the CPU stolen by other guests, measuring again … `);
        // The host's busy spells last tens of seconds here: let this one pass, then warm up again.
        await sleep(STEAL_PAUSE_MS);
        await runWrk(t.url, { ...plan.wrk, durationS: 1 });
      }
      rounds.get(t.key)!.push(kept);
      const { wrk: result, cpuMsPer1k } = kept;
      console.log(`${int(result.rps)} req/s, p50 ${ms(result.p50Ms)}, p99 ${ms(result.p99Ms)}, CPU ${Number.isFinite(cpuMsPer1k) ? ms(cpuMsPer1k) : '–'}/1k${kept.steal > STEAL_MAX ? `, ${pct(kept.steal)} stolen` : ''}${wrkFailures(result) > 0 ? `, ${wrkFailures(result)} failed` : ''}`);
    }
  }
  return targets.map((t) => {
    const rs = rounds.get(t.key)!;
    return {
      key: t.key,
      label: t.label,
      rounds: rs,
      rps: median(rs.map((r) => r.wrk.rps)),
      p50Ms: median(rs.map((r) => r.wrk.p50Ms)),
      p99Ms: median(rs.map((r) => r.wrk.p99Ms)),
      failed: rs.reduce((a, r) => a + wrkFailures(r.wrk), 0),
      peakRssKb: max(rs.map((r) => r.peakRssKb)),
      idleRssKb: idle.get(t.key)!,
      cpuMsPer1k: median(rs.map((r) => r.cpuMsPer1k)),
    };
  });
}

// ── 2. switch under load ──

type SystemKey = 'cutover' | 'cutover-w2' | 'cutover-haproxy' | 'nginx' | 'haproxy' | 'haproxy-icr';

interface SwitchRecord {
  /** Epoch ms when the switch was started. */
  t: number;
  to: Colour;
  /** How long the switch command took (API round trip; `nginx -s reload`; signalling HAProxy). */
  commandMs: number;
  rollback?: RollbackTiming;
  /** Cutover only: fsync latency of the state disk, probed right after the rollback. */
  fsyncMs?: number;
  /** HAProxy engine: from sending the API call to the first answer of the new colour on a separate connection. */
  routedMs?: number;
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
    const { load, switches } = await withLoad(`http://127.0.0.1:${b.daemon!.livePort}`, plan, () =>
      switchRepeatedly(plan, other(b.daemonLive), async (to) => {
        const rb = await b.daemon!.rollback();
        if (rb.live !== to) throw new Error(`rollback went to ${rb.live}, expected ${to}`);
        if (rb.restarted) throw new Error('rollback restarted the standby: it was not warm');
        b.daemonLive = rb.live;
        return { commandMs: rb.apiMs, rollback: rb, fsyncMs: await b.daemon!.fsyncProbe() };
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
      await b.haproxy!.reload(haproxyConfig(b.dir, b.haproxyPort, b.origin[b.haproxyColour], { idleCloseOnResponse }));
      await sleep(1_000);
    }
    process.stdout.write(`  ${label}: ${plan.switches} reloads under load … `);
    const { load, switches } = await withLoad(`http://127.0.0.1:${b.haproxyPort}`, plan, () =>
      switchRepeatedly(plan, other(b.haproxyColour), async (to) => {
        const t0 = nowMs();
        await b.haproxy!.reload(haproxyConfig(b.dir, b.haproxyPort, b.origin[to], { idleCloseOnResponse }));
        b.haproxyColour = to;
        return { commandMs: nowMs() - t0 };
      }));
    results.push(analyseSwitchRun(idleCloseOnResponse ? 'haproxy-icr' : 'haproxy', label, 'rewrite `server`, SIGUSR2 to the master (`-W` master-worker reload)', load, switches));
    console.log(`${load.failed} failed of ${int(load.requests)}`);
  }
  return results;
}

/** The bare router with workers = 2: swaps over IPC, each answered once both workers acknowledged it. */
async function switchingWorkers(b: Bench, plan: Plan): Promise<SwitchResult> {
  const r2 = b.router2!;
  let colour: Colour = 'blue';
  process.stdout.write(`  Cutover router, workers = 2: ${plan.switches} swaps under load … `);
  const { load, switches } = await withLoad(`http://127.0.0.1:${r2.port}`, plan, () =>
    switchRepeatedly(plan, other(colour), async (to) => {
      const t0 = nowMs();
      await r2.swap(to, b.origin);
      colour = to;
      return { commandMs: nowMs() - t0 };
    }));
  console.log(`${load.failed} failed of ${int(load.requests)}`);
  return analyseSwitchRun('cutover-w2', 'Cutover router, workers = 2', 'route swap sent to both worker threads, answered when both acknowledged', load, switches);
}

/** Polls `url` on its own keep-alive connection until it answers `want`; ms since `t0`. */
async function routedAfter(pool: Pool, want: Colour, t0: number, timeoutMs = 5_000): Promise<number> {
  for (;;) {
    const res = await pool.request({ path: '/', method: 'GET' });
    const body = (await res.body.text()).trim();
    if (body === want) return nowMs() - t0;
    if (nowMs() - t0 > timeoutMs) throw new Error(`routing did not change to ${want} within ${timeoutMs} ms`);
  }
}

interface EngineResults {
  /** The engine's \`logSample: auto\` N on the live listener after the warm-up, and after the throughput rounds. */
  sample: { before: number; after: number };
  throughput: TargetResult[];
  switching: SwitchResult;
}

/** 5. The HAProxy engine: throughput against bare HAProxy (same run), switches under load, time to routing change. */
async function engineSection(b: Bench, plan: Plan, clkTck: number): Promise<EngineResults> {
  const eng: EngineDaemon = await startEngineDaemon(path.join(b.dir, 'engine'), b.origin);
  const every: EngineDaemon = await startEngineDaemon(path.join(b.dir, 'engine-every'), b.origin, { logSample: 1 });
  // The engine's own sampling under this load (logSample: auto), given to its bare peer, so that
  // both run the same configuration; a second bare peer logs every request, like \`every\`.
  await runWrk(`http://127.0.0.1:${eng.daemon.livePort}/`, { ...plan.wrk, durationS: 3 });
  const sampleN = eng.sample().live;
  const same = await startSameConfigHAProxy(path.join(b.dir, 'haproxy-same'), b.origin.blue, { sample: sampleN });
  const sameEvery = await startSameConfigHAProxy(path.join(b.dir, 'haproxy-same-every'), b.origin.blue, { sample: 1 });
  console.log(`  logSample auto under this load: 1 in ${sampleN}`);
  const targets: Target[] = [
    { key: 'haproxy', label: 'HAProxy (bench config)', url: `http://127.0.0.1:${b.haproxyPort}/`, pids: group(b.haproxy!.pid) },
    { key: 'haproxy-same', label: `HAProxy with the engine's config, no Cutover (1 in ${sampleN} logged)`, url: `http://127.0.0.1:${same.port}/`, pids: group(same.haproxy.pid) },
    { key: 'haproxy-engine', label: 'Cutover, `router.engine: haproxy` (HAProxy + daemon, `logSample: auto`)', url: `http://127.0.0.1:${eng.daemon.livePort}/`, pids: () => [...processAndChildren(eng.haproxyPid()), eng.daemon.pid], part: () => [eng.daemon.pid] },
    { key: 'haproxy-same-every', label: 'HAProxy with the engine\'s config, no Cutover, every request logged', url: `http://127.0.0.1:${sameEvery.port}/`, pids: group(sameEvery.haproxy.pid) },
    { key: 'haproxy-engine-every', label: 'Cutover, `router.engine: haproxy`, every request logged (`logSample: 1`, as while analysis runs)', url: `http://127.0.0.1:${every.daemon.livePort}/`, pids: () => [...processAndChildren(every.haproxyPid()), every.daemon.pid], part: () => [every.daemon.pid] },
  ];
  console.log('  throughput');
  const tp = await throughput(targets, { ...plan, rounds: plan.engineRounds }, clkTck);
  const sampleAfter = eng.sample().live;
  await same.haproxy.stop();
  await sameEvery.haproxy.stop();
  await every.daemon.stop();
  let live: Colour = 'green';
  const probe = new Pool(`http://127.0.0.1:${eng.daemon.livePort}`, { connections: 1, pipelining: 1 });
  process.stdout.write(`  Cutover + HAProxy engine: ${plan.switches} rollbacks through the admin API under load … `);
  const { load, switches } = await withLoad(`http://127.0.0.1:${eng.daemon.livePort}`, plan, () =>
    switchRepeatedly(plan, other(live), async (to) => {
      const t0 = nowMs();
      const routed = routedAfter(probe, to, t0);
      const rb = await eng.daemon.rollback();
      if (rb.live !== to) throw new Error(`rollback went to ${rb.live}, expected ${to}`);
      live = rb.live;
      return { commandMs: rb.apiMs, rollback: rb, routedMs: await routed };
    }));
  console.log(`${load.failed} failed of ${int(load.requests)}`);
  await probe.close();
  await eng.daemon.stop();
  return { sample: { before: sampleN, after: sampleAfter }, throughput: tp, switching: analyseSwitchRun('cutover-haproxy', 'Cutover + HAProxy engine', '`POST /api/v1/rollback` → one `set map` on the runtime API (no reload)', load, switches) };
}

// ── 3. rollback time ──

/** Rollbacks without traffic, each followed (not overlapped) by one fsync probe of the state disk. */
async function rollbacksIdle(b: Bench, plan: Plan): Promise<{ timings: RollbackTiming[]; fsyncMs: number[] }> {
  const timings: RollbackTiming[] = [];
  const fsyncMs: number[] = [];
  for (let i = 0; i < plan.rollbacks; i++) {
    const rb = await b.daemon!.rollback();
    if (rb.restarted) throw new Error('rollback restarted the standby: it was not warm');
    b.daemonLive = rb.live;
    timings.push(rb);
    fsyncMs.push(await b.daemon!.fsyncProbe());
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
  mode: Mode;
  machine: Machine;
  throughput: TargetResult[];
  switching: SwitchResult[];
  /** Absent in the `haproxy` and `workers` runs (they start no builtin daemon). */
  rollback: { idle: RollbackTiming[]; underLoad: RollbackTiming[]; fsyncIdleMs: number[]; fsyncUnderLoadMs: number[] } | null;
  engine: EngineResults | null;
  targets: { name: string; measured: string; goal: string; met: boolean }[];
}

function evaluateTargets(r: Omit<Results, 'targets'>): Results['targets'] {
  const by = (k: TargetKey) => r.throughput.find((t) => t.key === k);
  const nginx = by('nginx');
  const out: Results['targets'] = [];
  for (const k of ['router', 'daemon'] as const) {
    const t = by(k);
    if (t === undefined || nginx === undefined) continue;
    const name = k === 'router' ? 'router (workers = 1)' : 'daemon (router + metrics + controller)';
    out.push({ name: `${name}: CPU per request vs nginx`, measured: ratio(t.cpuMsPer1k / nginx.cpuMsPer1k), goal: `≤ ${TARGET_CPU_VS_NGINX}×`, met: t.cpuMsPer1k / nginx.cpuMsPer1k <= TARGET_CPU_VS_NGINX });
    out.push({ name: `${name}: throughput vs nginx`, measured: ratio(t.rps / nginx.rps), goal: `≥ ${TARGET_RPS_VS_NGINX}×`, met: t.rps / nginx.rps >= TARGET_RPS_VS_NGINX });
    out.push({ name: `${name}: p99 vs nginx`, measured: ratio(t.p99Ms / nginx.p99Ms), goal: `≤ ${TARGET_P99_VS_NGINX}×`, met: t.p99Ms / nginx.p99Ms <= TARGET_P99_VS_NGINX });
    out.push({ name: `${name}: peak RSS under load`, measured: mb(t.peakRssKb), goal: `< ${TARGET_RSS_MB} MB`, met: t.peakRssKb < TARGET_RSS_KIB });
  }
  const cut = r.switching.find((s) => s.key === 'cutover');
  if (cut) out.push({ name: `failed requests across ${cut.switches.length} switches under load`, measured: int(cut.load.failed), goal: '0', met: cut.load.failed === 0 });
  const w2 = r.switching.find((s) => s.key === 'cutover-w2');
  if (w2) out.push({ name: `workers = 2: failed requests across ${w2.switches.length} switches under load`, measured: int(w2.load.failed), goal: '0', met: w2.load.failed === 0 });
  if (r.rollback) {
    const idle = r.rollback.idle.map((x) => x.apiMs);
    const loaded = r.rollback.underLoad.map((x) => x.apiMs);
    out.push({ name: 'rollback, API call to response (idle): max', measured: ms(max(idle)), goal: `< ${TARGET_ROLLBACK_MS} ms`, met: max(idle) < TARGET_ROLLBACK_MS });
    out.push({ name: 'rollback, API call to response (under load): max', measured: ms(max(loaded)), goal: `< ${TARGET_ROLLBACK_MS} ms`, met: max(loaded) < TARGET_ROLLBACK_MS });
  }
  if (r.engine) {
    const e = r.engine.throughput;
    const same = e.find((t) => t.key === 'haproxy-same')!;
    const eng = e.find((t) => t.key === 'haproxy-engine')!;
    out.push({ name: 'HAProxy engine: throughput vs bare HAProxy with the same config', measured: ratio(eng.rps / same.rps), goal: `≥ ${TARGET_ENGINE_VS_HAPROXY}×`, met: eng.rps / same.rps >= TARGET_ENGINE_VS_HAPROXY });
    const sameCpu = eng.cpuMsPer1k / same.cpuMsPer1k;
    out.push({ name: 'HAProxy engine: CPU per request vs bare HAProxy with the same config (daemon included; beside the throughput goal, less sensitive to sharing)', measured: ratio(sameCpu), goal: `≤ ${ratio(1 / TARGET_ENGINE_VS_HAPROXY)}`, met: sameCpu <= 1 / TARGET_ENGINE_VS_HAPROXY });
    const sw = r.engine.switching;
    out.push({ name: `HAProxy engine: failed requests across ${sw.switches.length} switches under load`, measured: int(sw.load.failed), goal: '0', met: sw.load.failed === 0 });
    const routed = sw.switches.map((x) => x.routedMs ?? Number.NaN);
    out.push({ name: 'HAProxy engine: switch API call → routing changed (median / max)', measured: `${ms(median(routed))} / ${ms(max(routed))}`, goal: `< ${TARGET_ROLLBACK_MS} ms`, met: max(routed) < TARGET_ROLLBACK_MS });
  }
  return out;
}

/** One table of throughput results, CPU per request first (the headline), ratios to the given peers. */
function throughputTable(results: TargetResult[], peers: { key: TargetKey; name: string }[]): string {
  const peerRows = peers.map((p) => ({ ...p, t: results.find((x) => x.key === p.key) })).filter((p) => p.t !== undefined) as { key: TargetKey; name: string; t: TargetResult }[];
  const cpu = (t: TargetResult) => (Number.isFinite(t.cpuMsPer1k) ? ms(t.cpuMsPer1k) : '–');
  return table(
    ['target', 'CPU per 1k req', ...peerRows.map((p) => `CPU/req vs ${p.name}`), 'req/s', ...peerRows.map((p) => `req/s vs ${p.name}`), 'p50', 'p99', ...peerRows.map((p) => `p99 vs ${p.name}`), 'failed', 'RSS before load', 'peak RSS'],
    results.map((t) => [
      t.label, cpu(t), ...peerRows.map((p) => (Number.isFinite(t.cpuMsPer1k) ? ratio(t.cpuMsPer1k / p.t.cpuMsPer1k) : '–')),
      int(t.rps), ...peerRows.map((p) => ratio(t.rps / p.t.rps)),
      ms(t.p50Ms), ms(t.p99Ms), ...peerRows.map((p) => ratio(t.p99Ms / p.t.p99Ms)),
      int(t.failed), mb(t.idleRssKb), mb(t.peakRssKb),
    ]),
  );
}

function rawRounds(results: TargetResult[]): string {
  return table(
    ['round', 'target', 'requests', 'req/s', 'p50', 'p90', 'p99', 'max', 'socket errors', 'non-2xx', 'peak RSS', 'CPU per 1k req', 'CPU stolen', 'runs'],
    results.flatMap((t) => t.rounds.map((x) => [
      String(x.round), t.label, int(x.wrk.requests), int(x.wrk.rps), ms(x.wrk.p50Ms), ms(x.wrk.p90Ms), ms(x.wrk.p99Ms), ms(x.wrk.maxMs),
      int(x.wrk.socketErrors.connect + x.wrk.socketErrors.read + x.wrk.socketErrors.write + x.wrk.socketErrors.timeout), int(x.wrk.non2xx),
      mb(x.peakRssKb), Number.isFinite(x.cpuMsPer1k) ? ms(x.cpuMsPer1k) : '–', pct(x.steal), String(x.attempts),
    ])).sort((a, b) => Number(a[0]) - Number(b[0])),
    ['r', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
}

function renderThroughput(r: Results): string {
  const main = throughputTable(r.throughput, [{ key: 'nginx', name: 'nginx' }, { key: 'haproxy', name: 'HAProxy' }]);
  const w1 = r.throughput.find((t) => t.key === 'router');
  const w2 = r.throughput.find((t) => t.key === 'router-w2');
  const workers = w1 && w2 ? `\n\n**workers = 2 next to workers = 1** (same run): ${ratio(w2.rps / w1.rps)} the requests per second at ${ratio(w2.cpuMsPer1k / w1.cpuMsPer1k)} the CPU per request. On ${r.machine.cpus} cores shared with wrk (which takes most of one) and the origin, a second data-plane thread has little idle CPU to use; on hosts with free cores it scales further.` : '';
  return `${main}${workers}\n\nPer round (raw wrk figures):\n\n${rawRounds(r.throughput)}`;
}

function renderEngine(r: Results): string {
  const e = r.engine!;
  const tp = throughputTable(e.throughput, [{ key: 'haproxy-same', name: 'same-config HAProxy' }, { key: 'haproxy', name: 'HAProxy (bench config)' }]);
  const everyT = e.throughput.find((t) => t.key === 'haproxy-engine-every');
  const sameEvery = e.throughput.find((t) => t.key === 'haproxy-same-every');
  const everyLine = everyT && sameEvery ? `\n\nEvery request logged, engine vs the same bare HAProxy: ${ratio(everyT.rps / sameEvery.rps)} the requests per second at ${ratio(everyT.cpuMsPer1k / sameEvery.cpuMsPer1k)} the CPU per request.` : '';
  const daemonShare = e.throughput.filter((t) => t.rounds.some((x) => Number.isFinite(x.partCpuMsPer1k))).map((t) => {
    const part = median(t.rounds.map((x) => x.partCpuMsPer1k));
    return `${t.key === 'haproxy-engine-every' ? 'every request logged' : '`logSample: auto`'}: ${ms(part)} of ${ms(t.cpuMsPer1k)} per 1k requests`;
  });
  const shareLine = daemonShare.length > 0 ? `\n\nThe daemon's own CPU in the engine's figure (median of the rounds): ${daemonShare.join('; ')}.` : '';
  const sw = e.switching;
  const routed = sw.switches.map((x) => x.routedMs ?? Number.NaN);
  const api = sw.switches.map((x) => x.commandMs);
  const timing = table(
    ['switches', 'API call → routing changed: median', 'p90', 'max', 'API call → response: median', 'max'],
    [[int(sw.switches.length), ms(median(routed)), ms(percentile(routed, 90)), ms(max(routed)), ms(median(api)), ms(max(api))]],
    ['r', 'r', 'r', 'r', 'r', 'r'],
  );
  return `\`router.engine: haproxy\`: the daemon writes the HAProxy configuration, runs HAProxy and switches
through its runtime API (\`set map\`, no reload). Its peers, measured in the same ${r.plan.engineRounds} rounds (medians; the
engine is a few % from its peer, inside one round's noise on a shared machine; nothing of sections
1-3 but the origin and the bench-config HAProxy is left running): the
section-1 HAProxy, and bare HAProxys running **the configuration the engine writes** (same
renderer and settings: header rules, map lookup, request log into a ring, the same 1-in-N
sampling of that log) with no Cutover attached, so the ratio to them isolates what Cutover's
driving costs. The engine's CPU is HAProxy's (master + worker) **plus the daemon's** (every process
of the daemon: it polls HAProxy's counters every second for per-colour counts, reads the sampled
request log for latencies and error kinds, and runs health checks, the admin API and metrics).
With the default \`logSample: auto\` the engine logged 1 answer in ${e.sample.before} under this load
(${e.sample.after} after the rounds; about ${AUTO_SAMPLE_LINES_PER_S} lines a second). The last two rows log every request,
as the engine does while post-switch analysis holds \`everyRequest\` (the bake window only).

${tp}${everyLine}${shareLine}

Per round:

${rawRounds(e.throughput)}

Switches under load (the section-2 load: ${r.plan.load.connections} keep-alive + ${r.plan.load.slowConnections} slow connections), each a
rollback through the admin API; "routing changed" is the time from sending the API call to the
first answer from the new colour on a separate keep-alive connection that polls the live listener:

${renderSwitchTable([sw])}

${timing}`;
}

function renderSwitchTable(list: SwitchResult[]): string {
  return table(
    ['system', 'switch by', 'switches', 'requests', 'failed', 'failed per switch (mean / max)', 'slow requests completed', 'slow in flight at each switch (min)', 'answers blue / green', 'switch command (median / max)'],
    list.map((s) => [
      s.label, s.how, int(s.switches.length), int(s.load.requests), int(s.load.failed),
      `${fmt(mean(s.failedPerSwitch))} / ${int(max(s.failedPerSwitch))}`,
      `${int(s.load.slow.ok)} of ${int(s.load.slow.requests)}`, int(s.minSlowInFlight),
      `${int(s.load.colours.blue ?? 0)} / ${int(s.load.colours.green ?? 0)}`,
      `${ms(median(s.switches.map((x) => x.commandMs)))} / ${ms(max(s.switches.map((x) => x.commandMs)))}`,
    ]),
    ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
}

function renderSwitching(r: Results): string {
  const main = renderSwitchTable(r.switching);
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

function renderRollback(res: Results): string {
  const r = { ...res, rollback: res.rollback! };
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

/** What the hypervisor took: this is a virtual machine, and other guests' load shows as stolen CPU. */
function stealSummary(r: Results): string {
  const all = [...r.throughput, ...(r.engine?.throughput ?? [])].flatMap((t) => t.rounds);
  if (all.length === 0) return '';
  const again = all.reduce((a, x) => a + x.attempts - 1, 0);
  const over = all.filter((x) => x.steal > STEAL_MAX).length;
  return `Other guests of the host took CPU time too (stolen time in \`/proc/stat\`; seen here: at 20-39 % stolen, nginx's CPU per request rose 1.6×, the router's 2.7×): a measured run with more than ${pct(STEAL_MAX)} stolen was measured again, keeping the least disturbed try (${again} run${again === 1 ? '' : 's'} measured again in this run${over > 0 ? `; ${over} kept run${over === 1 ? '' : 's'} still over it, the retry budget of ${STEAL_RETRIES} per section spent` : ''}; the most stolen in a kept run: ${pct(max(all.map((x) => x.steal)))}).`;
}

function roundSpread(r: Results): string {
  if (r.plan.rounds < 2) return 'This was a one-round (`--quick`) run, so no round-to-round spread was measured.';
  const parts = r.throughput.map((t) => {
    const rps = t.rounds.map((x) => x.wrk.rps);
    const spread = (Math.max(...rps) - Math.min(...rps)) / mean(rps);
    return `${t.label} ${Math.round(spread * 100)} %`;
  });
  return `In this run, throughput differed between its fastest and slowest round by ${parts.join(', ')}.`;
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
  blue, then v2 on green, so blue is the warm standby. Its CPU and RSS are the controller's
  **plus its router process's** (\`cutover router\`, detached from the controller since issue 10;
  its pid is read from the daemon's status, \`routers[].pid\`): before, the row counted the
  controller alone and showed about a twentieth of the real CPU per request.
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
measured; ${p.rounds} round${p.rounds === 1 ? '' : 's'}${p.rounds > 1 ? ", every second one in reverse order so slow drift of the machine hits every target alike; req/s, p50, p99 and CPU per request are the medians of the rounds' figures (one round disturbed by something else on the machine moves them little)" : ''}.
RSS before load is read just before the first warm-up. Peak RSS is the highest VmRSS from \`/proc/<pid>/status\` sampled every 100 ms during
the measured runs (for nginx and HAProxy: master + workers); V8 keeps growing its heap under
sustained allocation, so a Node.js process under load for minutes reads higher than these
${p.rounds * p.durationS} s of measured load show. CPU per 1k requests is the proxy's
user + system time over the measured run (\`/proc/<pid>/stat\`) divided by requests served: it
depends far less on how the two cores were shared than req/s does. CPU time the host gives to
other guests (stolen time, see Noise) raises it too, the router's more than nginx's.

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

${r.throughput.length > 0 ? `## 1. Throughput and latency\n\n${renderThroughput(r)}\n\n` : ''}${r.switching.length > 0 ? `## 2. Switch under load\n\n${renderSwitching(r)}\n` : ''}${r.rollback ? `\n## 3. Rollback time\n\n${renderRollback(r)}\n` : ''}${r.engine ? `\n## 5. HAProxy engine\n\n${renderEngine(r)}\n` : ''}
## Noise

This machine has ${m.cpus} cores, shared by the load generator, the proxy under test, the origin and,
during this run, other people's builds and tests${Math.max(...m.loadBefore, ...m.loadAfter) > m.cpus * 2 ? ` — heavily: the load average was ${m.loadBefore[0].toFixed(1)} before and ${m.loadAfter[0].toFixed(1)} after the run on ${m.cpus} cores, so every process waited for a CPU most of the time; absolute figures here are far below what the same code does on a quiet machine, and even ratios move more than usual (CPU per request is inflated too, by cache and scheduler churn)` : ''}. Absolute req/s and especially p99 move with
whatever else runs. ${roundSpread(r)} ${stealSummary(r)} That is why every figure is a ratio to peers measured
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
  const { values: args, positionals } = parseArgs({
    allowPositionals: true,
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
  if (args.only !== undefined && args.only !== 'dataplane' && args.only !== 'engine') throw new Error(`--only: expected http2, dataplane or engine, got ${args.only}`);
  const mode: Mode = args.only === 'engine' ? 'haproxy' : positionals[0] === undefined ? 'all' : (positionals[0] as Mode);
  if (!['all', 'haproxy', 'workers'].includes(mode)) throw new Error(`unknown section ${JSON.stringify(positionals[0])}: expected haproxy or workers (or nothing, for the whole run)`);
  const plan = args.quick ? QUICK : FULL;
  const out = args.out ?? (args.quick || mode !== 'all' ? null : DEFAULT_OUT);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-bench-'));
  const clkTck = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const m = await machine();
  console.log(`Cutover benchmark${plan.quick ? ' (--quick)' : ''}${mode === 'all' ? '' : ` — ${mode} only`}: ${m.cpus} cores (${m.cpuModel}), Node.js ${m.node}, ${m.nginx}, ${m.haproxy}; temp dir ${dir}\n`);
  let ok = false;
  if (args.only === 'dataplane') {
    // Section 5 alone: printed (and written to --out when given), docs/benchmarks.md untouched.
    try {
      console.log('6. The data plane apart from the controller');
      const dp = await dataPlaneBench({ quick: plan.quick, dir });
      const md = `## 6. The data plane apart from the controller\n\n${renderDataPlane(dp)}`;
      console.log(`\n${md}`);
      if (args.out !== undefined) writeFileSync(args.out, md);
      if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(dp, null, 2)}\n`);
      ok = true;
      return 0;
    } finally {
      await stopAll();
      if (ok && !args.keep) rmSync(dir, { recursive: true, force: true });
    }
  }
  try {
    const b = await setup(dir, mode);
    let tp: TargetResult[] = [];
    const sw: SwitchResult[] = [];
    let rollback: Results['rollback'] = null;
    let engine: EngineResults | null = null;
    if (mode !== 'haproxy') {
      console.log('1. Throughput and latency');
      tp = await throughput(coreTargets(b), plan, clkTck);
      console.log('\n2. Switch under load');
      if (mode === 'all') sw.push(...await switching(b, plan));
      sw.splice(1, 0, await switchingWorkers(b, plan));
    }
    if (mode === 'all') {
      console.log('\n3. Rollback time (idle)');
      const idle = await rollbacksIdle(b, plan);
      console.log(`  ${idle.timings.length} rollbacks, API median ${ms(median(idle.timings.map((x) => x.apiMs)))}, max ${ms(max(idle.timings.map((x) => x.apiMs)))}`);
      rollback = {
        idle: idle.timings,
        underLoad: sw.find((s) => s.key === 'cutover')!.switches.map((s) => s.rollback!),
        fsyncIdleMs: idle.fsyncMs,
        fsyncUnderLoadMs: sw.find((s) => s.key === 'cutover')!.switches.map((s) => s.fsyncMs!),
      };
    }
    if (mode !== 'workers') {
      // Section 5 measures a few % between the engine and its bare peer: nothing of sections 1-3
      // that it does not use stays running beside it (the daemon's health checks, idle routers).
      await Promise.all([b.router.stop(), b.router2?.stop(), b.daemon?.stop(), b.nginx.stop()]);
      console.log('\n5. HAProxy engine');
      engine = await engineSection(b, plan, clkTck);
    }
    m.loadAfter = os.loadavg();
    const partial = { plan, mode, machine: m, throughput: tp, switching: sw, rollback, engine };
    let detection: DetectionResult[] | null = null;
    let detectionError: string | null = null;
    if (mode === 'all') {
      console.log('\n4. Detection to rollback (post-switch analysis)');
      // Its own process with its own daemons: a failure there (e.g. a port taken meanwhile on a
      // shared machine) is reported in the file instead of discarding every other section.
      detection = await detectionBench(plan.quick ? 2 : 5).catch((err: Error) => {
        detectionError = (err.message.split('\n').find((l) => /Error:/.test(l)) ?? err.message.split('\n')[0]).trim();
        console.error(`  detection bench failed: ${detectionError}`);
        return null;
      });
    }
    const results: Results = { ...partial, targets: evaluateTargets(partial) };
    let md = renderMarkdown(results);
    const detectionMd = detection ? renderDetection(detection) : detectionError ? `Not measured in this run: \`bench/analysis-detection.ts\` failed (${detectionError}).\n` : null;
    if (detectionMd) md = md.replace('\n## 5. HAProxy engine', `\n## 4. Detection to rollback\n\n${detectionMd}\n## 5. HAProxy engine`);
    if (mode === 'all') {
      console.log('\n6. The data plane apart from the controller');
      const dp = await dataPlaneBench({ quick: plan.quick, dir });
      md = md.replace('\n## Noise', `\n## 6. The data plane apart from the controller\n\n${renderDataPlane(dp)}\n## Noise`);
    }
    console.log(`\n${md}`);
    if (out !== null) {
      writeFileSync(out, md);
      console.log(`written to ${path.relative(process.cwd(), out) || out}`);
    }
    if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify({ ...results, detection }, null, 2)}\n`);
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

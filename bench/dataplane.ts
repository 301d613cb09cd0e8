/**
 * Section 6 of `npm run bench`: the data plane apart from the controller (issue 10).
 * Selectable alone: `node bench/run.ts --only dataplane [--quick]`.
 *
 * a. Fleet: a 3-member etcd cluster (the Debian `etcd`), three `cutover router` processes, a
 *    controller (`cutover up` with `fleet:`); N rollbacks through the admin API under keep-alive
 *    load through all three routers: API call to the last router's acknowledgement (the API answers
 *    once every router acknowledged), the controller's publish-to-last-ack time, failed requests.
 * b. kill -9 of the controller under keep-alive load on one machine, twice: with the router as
 *    its own process (what `cutover up` does) and with `--embedded-router` (the router inside the
 *    controller, as before issue 10). Failed requests counted from the kill until the restarted
 *    controller is up and serving again.
 *
 * c. Failover of the controller (issue 11): three `cutover up --id` controllers (one leads, leaseTtl
 *    2 s), two routers, a 3-member etcd; the leader is killed with -9 under load, a few times: time
 *    from the kill to the next rollback accepted by a surviving controller and acknowledged by
 *    every router (it is retried until then), and failed requests.
 *
 * Every server is our own child process on loopback, stopped at the end and on errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClient } from '../src/api/client.ts';
import type { DeploymentRecord } from '../src/store/types.ts';
import { startEtcdCluster } from '../test/etcd-cluster.ts';
import type { LoadCommand, LoadReply, LoadResult } from './loadgen.ts';
import { BIN, binNodeFlags, forkChild, freePort, sleep, waitExit, waitForPort, withCompileCache } from './procs.ts';
import { max, median, ms, table } from './report.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TOKEN = 'cutover-bench-token-not-secret';

export interface DataPlaneResults {
  fleet: { routers: number; switches: number; apiMs: number[]; ackMs: number[]; requests: number; failed: number; byKind: Record<string, number>; allAcked: number };
  kill: { mode: 'router process' | 'embedded router'; requests: number; failed: number; byKind: Record<string, number>; downMs: number }[];
  failover: { kills: number; leaseTtlMs: number; electedMs: number[]; rollbackMs: number[]; requests: number; failed: number; byKind: Record<string, number> };
}

/** Origins answering their colour (the load generator checks the body), and /health. */
async function origin(colour: string): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(colour) });
    res.end(colour);
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return { port, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

const owned = new Set<ChildProcess>();
function cutover(args: string[], cwd: string): ChildProcess {
  const child = spawn(process.execPath, [...binNodeFlags(), BIN, ...args], { cwd, env: { ...withCompileCache(), CUTOVER_TOKEN: TOKEN, CUTOVER_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  owned.add(child);
  child.once('exit', () => owned.delete(child));
  return child;
}

function waitUp(child: ChildProcess, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not come up:\n${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('is up')) { clearTimeout(timer); resolve(); } });
    child.stderr!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-5_000); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with ${code}:\n${out}`)); });
  });
}

async function deploy(client: AdminClient, version: string): Promise<void> {
  const { deployment } = await client.call<{ deployment: DeploymentRecord }>('POST', '/deployments', { version });
  for (;;) {
    const { deployment: d } = await client.call<{ deployment: DeploymentRecord }>('GET', `/deployments/${encodeURIComponent(deployment.id)}`);
    if (d.finishedAt !== null) { if (d.status !== 'succeeded') throw new Error(`deploy ${version}: ${d.status} ${d.error?.message ?? ''}`); return; }
    await sleep(100);
  }
}

function startLoad(url: string, connections: number): { stop: () => Promise<LoadResult> } {
  const child = forkChild(path.join(HERE, 'loadgen.ts'));
  const reply = (type: LoadReply['type']) => new Promise<LoadReply>((resolve, reject) => {
    const on = (m: LoadReply) => { if (m.type === type) { child.off('message', on); resolve(m); } };
    child.on('message', on);
    child.once('exit', (code) => reject(new Error(`load generator exited with ${code}`)));
  });
  const started = reply('started');
  child.send({ type: 'start', origin: url, connections, slowConnections: 0, slowMs: 0, timeoutMs: 10_000 } satisfies LoadCommand);
  return {
    stop: async () => {
      await started;
      const result = reply('result');
      child.send({ type: 'stop' } satisfies LoadCommand);
      const r = (await result) as { type: 'result' } & LoadResult;
      await waitExit(child, 10_000).catch(() => {});
      return r;
    },
  };
}

function yaml(o: { live: number; preview: number; admin: number; blue: number; green: number; fleet?: string[]; leaseTtl?: string }): string {
  return [
    'app: bench',
    `router: { listen: 127.0.0.1:${o.live}, preview: 127.0.0.1:${o.preview}, drainTimeout: 5s }`,
    `admin: { listen: 127.0.0.1:${o.admin} }`,
    `environments: { provider: static, static: { blue: [127.0.0.1:${o.blue}], green: [127.0.0.1:${o.green}] } }`,
    'health: { interval: 500ms, timeout: 2s }',
    ...(o.fleet ? ['fleet:', `  etcd: { endpoints: [${o.fleet.join(', ')}] }`, `  leaseTtl: ${o.leaseTtl ?? '5s'}`, '  ackTimeout: 5s'] : []),
    '',
  ].join('\n');
}

async function ports() {
  return { live: await freePort(), preview: await freePort(), admin: await freePort() };
}

async function fleetRun(dir: string, switches: number, blue: number, green: number): Promise<DataPlaneResults['fleet']> {
  const etcd = await startEtcdCluster(3);
  const loads: { stop: () => Promise<LoadResult> }[] = [];
  try {
    const ctl = path.join(dir, 'fleet-controller');
    mkdirSync(ctl, { recursive: true });
    const cp = await ports();
    writeFileSync(path.join(ctl, 'cutover.yaml'), yaml({ ...cp, blue, green, fleet: etcd.endpoints }));
    const routerPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const rdir = path.join(dir, `fleet-r${i}`);
      mkdirSync(rdir, { recursive: true });
      const p = await ports();
      routerPorts.push(p.live);
      writeFileSync(path.join(rdir, 'cutover.yaml'), yaml({ ...p, blue, green, fleet: etcd.endpoints }));
      const r = cutover(['router', '--id', `r${i}`], rdir);
      await waitUp(r, `router r${i}`);
    }
    const up = cutover(['up'], ctl);
    await waitUp(up, 'cutover up (fleet)');
    const client = new AdminClient({ baseUrl: `http://127.0.0.1:${cp.admin}`, token: TOKEN, actor: 'bench', timeoutMs: 30_000 });
    await deploy(client, 'v1');
    await deploy(client, 'v2');
    for (const p of routerPorts) loads.push(startLoad(`http://127.0.0.1:${p}`, 8));
    await sleep(1_000);
    const apiMs: number[] = [];
    const ackMs: number[] = [];
    let allAcked = 0;
    for (let i = 0; i < switches; i++) {
      const t0 = performance.now();
      const r = await client.call<{ ack: { acknowledged: string[]; missing: string[]; ms: number } }>('POST', '/rollback', {});
      apiMs.push(performance.now() - t0);
      ackMs.push(r.ack.ms);
      if (r.ack.missing.length === 0 && r.ack.acknowledged.length === 3) allAcked++;
      await sleep(200);
    }
    await sleep(1_000);
    const results = await Promise.all(loads.splice(0).map((l) => l.stop()));
    const byKind: Record<string, number> = {};
    for (const r of results) for (const [k, n] of Object.entries(r.byKind)) byKind[k] = (byKind[k] ?? 0) + n;
    await client.close();
    return { routers: 3, switches, apiMs, ackMs, allAcked, requests: results.reduce((n, r) => n + r.requests, 0), failed: results.reduce((n, r) => n + r.failed, 0), byKind };
  } finally {
    for (const l of loads) await l.stop().catch(() => {});
    await stopOwned();
    await etcd.stop();
  }
}

async function killRun(dir: string, mode: 'router process' | 'embedded router', blue: number, green: number): Promise<DataPlaneResults['kill'][number]> {
  const d = path.join(dir, mode === 'router process' ? 'kill-process' : 'kill-embedded');
  mkdirSync(d, { recursive: true });
  const p = await ports();
  writeFileSync(path.join(d, 'cutover.yaml'), yaml({ ...p, blue, green }));
  const args = mode === 'embedded router' ? ['up', '--embedded-router'] : ['up'];
  let up = cutover(args, d);
  await waitUp(up, `cutover ${args.join(' ')}`);
  const client = new AdminClient({ baseUrl: `http://127.0.0.1:${p.admin}`, token: TOKEN, actor: 'bench', timeoutMs: 30_000 });
  try {
    await deploy(client, 'v1');
    await deploy(client, 'v2');
    const load = startLoad(`http://127.0.0.1:${p.live}`, 16);
    await sleep(1_000);
    const t0 = performance.now();
    up.kill('SIGKILL');
    await waitExit(up, 10_000);
    await sleep(500); // a crashed controller is not back at once: a supervisor's restart delay
    up = cutover(args, d);
    await waitUp(up, 'restarted controller');
    await waitForPort(p.live, null, 'live listener');
    const downMs = performance.now() - t0;
    await sleep(1_000);
    const r = await load.stop();
    return { mode, requests: r.requests, failed: r.failed, byKind: r.byKind, downMs };
  } finally {
    await client.close();
    await stopOwned();
  }
}

const FAILOVER_LEASE_TTL_MS = 2_000;

/** c. kill -9 of the leading controller, `kills` times: kill → next rollback acknowledged by every router. */
async function failoverRun(dir: string, kills: number, blue: number, green: number): Promise<DataPlaneResults['failover']> {
  const etcd = await startEtcdCluster(3);
  const loads: { stop: () => Promise<LoadResult> }[] = [];
  const clients = new Map<string, AdminClient>();
  try {
    const ids = ['c1', 'c2', 'c3'];
    const admin = new Map<string, number>();
    const procs = new Map<string, ChildProcess>();
    for (const id of ids) {
      const d = path.join(dir, `failover-${id}`);
      mkdirSync(d, { recursive: true });
      const p = await ports();
      admin.set(id, p.admin);
      writeFileSync(path.join(d, 'cutover.yaml'), yaml({ ...p, blue, green, fleet: etcd.endpoints, leaseTtl: `${FAILOVER_LEASE_TTL_MS / 1000}s` }));
      clients.set(id, new AdminClient({ baseUrl: `http://127.0.0.1:${p.admin}`, token: TOKEN, actor: 'bench', timeoutMs: 10_000 }));
    }
    const start = async (id: string) => {
      const c = cutover(['up', '--id', id, '--admin', `127.0.0.1:${admin.get(id)}`], path.join(dir, `failover-${id}`));
      procs.set(id, c);
      await waitUp(c, `controller ${id}`);
    };
    const routerPorts: number[] = [];
    for (let i = 0; i < 2; i++) {
      const rdir = path.join(dir, `failover-r${i}`);
      mkdirSync(rdir, { recursive: true });
      const p = await ports();
      routerPorts.push(p.live);
      // Records go to c1's admin API until a leader is known, then to the leader.
      writeFileSync(path.join(rdir, 'cutover.yaml'), yaml({ ...p, admin: admin.get('c1')!, blue, green, fleet: etcd.endpoints, leaseTtl: `${FAILOVER_LEASE_TTL_MS / 1000}s` }));
      await waitUp(cutover(['router', '--id', `fr${i}`], rdir), `router fr${i}`);
    }
    for (const id of ids) await start(id);
    const leaderOf = async (among: string[]): Promise<string> => {
      for (;;) {
        for (const id of among) {
          const s = await clients.get(id)!.call<{ leader?: { id: string } | null }>('GET', '/status').catch(() => null);
          if (s?.leader && among.includes(s.leader.id)) return s.leader.id;
        }
        await sleep(20);
      }
    };
    await deploy(clients.get('c2')!, 'v1');
    await deploy(clients.get('c3')!, 'v2');
    for (const p of routerPorts) loads.push(startLoad(`http://127.0.0.1:${p}`, 8));
    await sleep(1_000);
    const electedMs: number[] = [];
    const rollbackMs: number[] = [];
    for (let k = 0; k < kills; k++) {
      const leader = await leaderOf(ids);
      const rest = ids.filter((x) => x !== leader);
      const victim = procs.get(leader)!;
      const t0 = performance.now();
      victim.kill('SIGKILL');
      const elected = leaderOf(rest).then(() => performance.now() - t0);
      // The next rollback, sent to a surviving controller (forwarded to whoever leads) until one is accepted and acknowledged by both routers.
      for (let i = 0; ; i++) {
        const r = await clients.get(rest[i % rest.length])!.call<{ ack: { acknowledged: string[]; missing: string[] } }>('POST', '/rollback', {}).catch(() => null);
        if (r && r.ack.missing.length === 0 && r.ack.acknowledged.length === 2) break;
        await sleep(20);
      }
      rollbackMs.push(performance.now() - t0);
      electedMs.push(await elected);
      await waitExit(victim, 10_000).catch(() => {});
      await start(leader);
      await sleep(500);
    }
    await sleep(1_000);
    const results = await Promise.all(loads.splice(0).map((l) => l.stop()));
    const byKind: Record<string, number> = {};
    for (const r of results) for (const [k, n] of Object.entries(r.byKind)) byKind[k] = (byKind[k] ?? 0) + n;
    return { kills, leaseTtlMs: FAILOVER_LEASE_TTL_MS, electedMs, rollbackMs, requests: results.reduce((n, r) => n + r.requests, 0), failed: results.reduce((n, r) => n + r.failed, 0), byKind };
  } finally {
    for (const l of loads) await l.stop().catch(() => {});
    for (const c of clients.values()) await c.close().catch(() => {});
    await stopOwned();
    await etcd.stop();
  }
}

/** SIGTERM every process we started (a controller stops its router process with it), then SIGKILL. */
async function stopOwned(): Promise<void> {
  await Promise.all([...owned].map(async (c) => {
    c.kill('SIGTERM');
    await waitExit(c, 15_000).catch(() => c.kill('SIGKILL'));
  }));
}

/** Router processes left by a controller killed with -9 (they outlive it by design): ended at the end of the run. */
function killLeftoverRouters(dir: string): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8');
      if (env.includes('CUTOVER_ROUTER_SETTINGS=') && env.includes(dir)) process.kill(Number(entry), 'SIGKILL');
    } catch { /* gone, or not ours */ }
  }
}

export async function dataPlaneBench(o: { quick: boolean; dir: string }): Promise<DataPlaneResults> {
  const [b, g] = await Promise.all([origin('blue'), origin('green')]);
  try {
    const switches = o.quick ? 5 : 20;
    console.log(`  a. fleet: 3 routers, 3 etcd members, ${switches} rollbacks under load`);
    const fleet = await fleetRun(o.dir, switches, b.port, g.port);
    console.log(`     API to last ack median ${ms(median(fleet.apiMs))}, max ${ms(max(fleet.apiMs))}; ${fleet.failed} failed of ${fleet.requests}`);
    const kill: DataPlaneResults['kill'] = [];
    for (const mode of ['router process', 'embedded router'] as const) {
      console.log(`  b. kill -9 of the controller under load (${mode})`);
      const r = await killRun(o.dir, mode, b.port, g.port);
      console.log(`     ${r.failed} failed of ${r.requests} (controller down ${ms(r.downMs)})`);
      kill.push(r);
    }
    const kills = o.quick ? 2 : 5;
    console.log(`  c. failover: kill -9 of the leading controller of 3, ${kills} times, under load`);
    const failover = await failoverRun(o.dir, kills, b.port, g.port);
    console.log(`     kill → rollback acknowledged median ${ms(median(failover.rollbackMs))}, max ${ms(max(failover.rollbackMs))}; ${failover.failed} failed of ${failover.requests}`);
    return { fleet, kill, failover };
  } finally {
    await stopOwned();
    killLeftoverRouters(o.dir);
    await Promise.all([b.close(), g.close()]);
  }
}

export function renderDataPlane(r: DataPlaneResults): string {
  const f = r.fleet;
  const kinds = (k: Record<string, number>) => Object.entries(k).map(([n, c]) => `${n}: ${c}`).join(', ') || '-';
  return [
    `Fleet: ${f.routers} \`cutover router\` processes, a 3-member etcd cluster and the controller on this host; ${f.switches} rollbacks through`,
    'the admin API, 200 ms apart, under keep-alive load (8 connections through each router). The API answers once every',
    'router has acknowledged the revision (or fleet.ackTimeout passed).',
    '',
    table(['', 'median', 'max'], [
      ['API call to last acknowledgement', ms(median(f.apiMs)), ms(max(f.apiMs))],
      ['publish (etcd txn) to last acknowledgement', ms(median(f.ackMs)), ms(max(f.ackMs))],
    ], ['l', 'r', 'r']),
    '',
    table(['switches', 'acknowledged by all 3', 'requests', 'failed', 'failures by kind'], [[String(f.switches), String(f.allAcked), String(f.requests), String(f.failed), kinds(f.byKind)]], ['r', 'r', 'r', 'r', 'l']),
    '',
    'kill -9 of the controller under keep-alive load (16 connections), restarted 0.5 s later; failed requests from before the kill',
    'until 1 s after the new controller is up:',
    '',
    table(['router', 'requests', 'failed', 'failures by kind', 'controller down'], r.kill.map((k) => [k.mode, String(k.requests), String(k.failed), kinds(k.byKind), ms(k.downMs)]), ['l', 'r', 'r', 'l', 'r']),
    '',
    ...(r.failover ? [
      `Failover of the controller: three \`cutover up --id\` controllers (fleet.leaseTtl ${r.failover.leaseTtlMs / 1000} s), two routers, a 3-member etcd; the leader`,
      `killed with -9 ${r.failover.kills} times under keep-alive load (8 connections through each router). "Next rollback": from the kill`,
      'until a rollback sent to a surviving controller (retried every 20 ms) is accepted and acknowledged by both routers.',
      '',
      table(['', 'median', 'max'], [
        ['kill → another controller leads (status)', ms(median(r.failover.electedMs)), ms(max(r.failover.electedMs))],
        ['kill → next rollback acknowledged by the routers', ms(median(r.failover.rollbackMs)), ms(max(r.failover.rollbackMs))],
      ], ['l', 'r', 'r']),
      '',
      table(['kills', 'requests', 'failed', 'failures by kind'], [[String(r.failover.kills), String(r.failover.requests), String(r.failover.failed), kinds(r.failover.byKind)]], ['r', 'r', 'r', 'l']),
      '',
    ] : []),
  ].join('\n');
}

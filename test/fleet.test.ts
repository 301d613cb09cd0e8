/**
 * Fleet mode against a real 3-member etcd cluster on loopback: three `cutover router` processes
 * and a controller (`cutover up` with `fleet:`), keep-alive load through every router.
 * One sequence, each step building on the last: 20 switches each acknowledged by all routers
 * with 0 failed; kill -9 of the controller; one etcd member stopped; a router cut off from etcd
 * (through a TCP relay) reported and caught up; a router replaced under load; a majority of etcd
 * stopped: routers keep serving, a switch is refused with a clear error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, TEST_TOKEN, alive, cli, freePort, freePorts, serveShop, startDaemonProcess, tempDir, waitFor, waitForHealth, writeConfig, type DaemonProcess, type Ports } from './helpers.ts';
import { startEtcdCluster } from './etcd-cluster.ts';
import { startRelay } from './tcp-relay.ts';
import { keepAliveLoad, type LoadCount } from './load.ts';
import { fleetYaml } from './support/controllers.ts';

interface RouterRow { id: string; pid: number; revision: number; stale: boolean; live: { color: string } | null }
interface Status { live: { color: string; version: string } | null; router: { revision: number }; routers: RouterRow[] }
interface Ack { revision: number; acknowledged: string[]; missing: string[]; ms: number; left?: string[] }

/** The fleet config of these tests: the lease outlives the ack wait, so a router cut off just before a switch is still in the set and named. */
function yaml(o: { ports: Ports; endpoints: string[]; blue: number; green: number; prefix: string }): string {
  return fleetYaml({ ...o, leaseTtl: '8s', ackTimeout: '3s' });
}

function startRouter(dir: string, id: string, adminUrl: string): Promise<{ child: ChildProcess; output: () => string }> {
  return new Promise((resolve, reject) => {
    // CUTOVER_ADMIN_URL + CUTOVER_TOKEN: where the router pushes its request records (the controller).
    const child = spawn(process.execPath, [BIN, 'router', '--id', id], { cwd: dir, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_ADMIN_URL: adminUrl, CUTOVER_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('is up')) resolve({ child, output: () => out }); });
    child.stderr!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20_000); });
    child.once('exit', (code) => reject(new Error(`router ${id} exited with ${code}: ${out}`)));
    setTimeout(() => reject(new Error(`router ${id} did not come up: ${out}`)), 20_000).unref();
  });
}

test('a fleet of three routers on a 3-member etcd cluster', { timeout: 300_000 }, async (t) => {
  const etcd = await startEtcdCluster(3);
  const { dir, cleanup } = tempDir('cutover-fleet-');
  const bluePort = await freePort();
  const greenPort = await freePort();
  const shops = [serveShop(bluePort, 'blue'), serveShop(greenPort, 'green')];
  // r2 reaches etcd only through the relay (to member 0), so the test can cut it off.
  const relay = await startRelay({ host: '127.0.0.1', port: etcd.members[0].clientPort });
  const children: ChildProcess[] = [];
  let daemon: DaemonProcess | null = null;
  const loads: { stop: () => Promise<LoadCount>; count: LoadCount }[] = [];
  t.after(async () => {
    for (const l of loads) await l.stop().catch(() => {});
    await daemon?.stop('SIGKILL');
    for (const c of children) c.kill('SIGKILL');
    for (const s of shops) s.kill('SIGKILL');
    await relay.close();
    await etcd.stop();
    cleanup();
  });
  await waitForHealth([bluePort, greenPort]);
  const prefix = `/cutover-test-${process.pid}`;
  const ctlDir = path.join(dir, 'controller');
  mkdirSync(ctlDir);
  const ctlPorts = await freePorts();
  const adminUrl = `http://127.0.0.1:${ctlPorts.admin}`;
  writeConfig(ctlDir, yaml({ ports: ctlPorts, endpoints: etcd.endpoints, blue: bluePort, green: greenPort, prefix }));
  const routerDirs: string[] = [];
  const routerPorts: Ports[] = [];
  for (let i = 0; i < 3; i++) {
    const rdir = path.join(dir, `r${i}`);
    mkdirSync(rdir);
    const ports = await freePorts();
    routerPorts.push(ports);
    routerDirs.push(rdir);
    writeConfig(rdir, yaml({ ports, endpoints: i === 2 ? [`127.0.0.1:${relay.port}`] : etcd.endpoints, blue: bluePort, green: greenPort, prefix }));
  }
  const routers: { child: ChildProcess; output: () => string }[] = [];
  for (let i = 0; i < 3; i++) { const r = await startRouter(routerDirs[i], `r${i}`, adminUrl); children.push(r.child); routers.push(r); }
  daemon = await startDaemonProcess(ctlDir);
  assert.match(daemon.output(), /fleet: /, 'the controller runs no router of its own');
  const status = async (): Promise<Status> => {
    const r = await cli(['status', '--json'], { cwd: ctlDir });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Status;
  };
  const allAcked = (s: Status) => s.routers.length === 3 && s.routers.every((r) => r.revision === s.router.revision && !r.stale);
  await waitFor(async () => (await status()).routers.length === 3, { what: 'three routers registered' });

  for (const v of ['v1', 'v2']) {
    const d = await cli(['deploy', v], { cwd: ctlDir });
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.match(d.stdout, /acknowledged by 3\/3 router\(s\)/);
  }
  for (const p of routerPorts) loads.push(keepAliveLoad(`http://127.0.0.1:${p.live}`, { connections: 4 }));
  await waitFor(() => loads.every((l) => l.count.ok > 50), { what: 'load through every router' });
  const rollback = async (): Promise<{ code: number; ack?: Ack; stderr: string; stdout: string }> => {
    const r = await cli(['rollback', '--json'], { cwd: ctlDir });
    let ack: Ack | undefined;
    try { ack = (JSON.parse(r.stdout) as { ack?: Ack }).ack; } catch { /* an error, not the answer */ }
    return { code: r.code, stderr: r.stderr, stdout: r.stdout, ack };
  };
  const failed = () => loads.reduce((n, l) => n + l.count.failed, 0);

  await t.test('20 switches under keep-alive load through 3 routers: each acknowledged by all, 0 failed', async () => {
    const ackMs: number[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await rollback();
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.ack?.missing, [], `switch ${i + 1} acknowledged by every router`);
      assert.deepEqual([...(r.ack?.acknowledged ?? [])].sort(), ['r0', 'r1', 'r2']);
      ackMs.push(r.ack!.ms);
    }
    assert.ok(allAcked(await status()));
    assert.equal(failed(), 0, JSON.stringify(loads.map((l) => l.count.byKind)));
    // The routers' request records reach the controller (analysis, metrics, dashboard read them).
    const stats = await waitFor(async () => {
      const res = await fetch(`${adminUrl}/api/v1/stats?minutes=1&step=1s`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
      const body = (await res.json()) as { colors: Record<string, { requests: number }[]> };
      const n = Object.values(body.colors).flat().reduce((a, p) => a + p.requests, 0);
      return n > 1_000 ? n : null;
    }, { what: 'request records from the routers at the controller' });
    t.diagnostic(`controller counted ${stats} requests in the last minute from 3 routers`);
    t.diagnostic(`ack of all 3 routers: median ${ackMs.sort((a, b) => a - b)[10].toFixed(1)}ms, max ${ackMs[19].toFixed(1)}ms`);
  });

  await t.test('kill -9 of the controller under load: routers keep serving; a new controller switches again', async () => {
    daemon!.child.kill('SIGKILL');
    await new Promise((r) => daemon!.child.once('exit', r));
    const at = loads.map((l) => l.count.ok);
    await waitFor(() => loads.every((l, i) => l.count.ok > at[i] + 100), { what: 'routers serving without a controller' });
    daemon = await startDaemonProcess(ctlDir);
    const r = await rollback();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.ack?.acknowledged.length, 3);
    assert.equal(failed(), 0);
  });

  await t.test('one etcd member stopped: switches still work, acknowledged by all', async () => {
    await etcd.stopMember(1);
    for (let i = 0; i < 3; i++) {
      const r = await rollback();
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.ack?.missing, []);
    }
    etcd.startMember(1);
    await etcd.waitWritable();
    assert.equal(failed(), 0);
  });

  await t.test('a router cut off from etcd is named, keeps serving its last table, then catches up', async () => {
    const before = await status();
    relay.break();
    // Straight to the API (not a CLI process, slow to start on a busy host): the switch is
    // published while r2 is still registered (its lease outlives the ack wait).
    const res = await fetch(`${adminUrl}/api/v1/rollback`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(res.status, 200);
    const r = (await res.json()) as { ack: Ack };
    assert.deepEqual(r.ack.missing, ['r2'], `the cut-off router is named: ${JSON.stringify(r.ack)}`);
    assert.deepEqual([...r.ack.acknowledged].sort(), ['r0', 'r1']);
    const cut = await status();
    const r2 = cut.routers.find((x) => x.id === 'r2');
    // Reported: stale while its lease lasts, then gone from the set (lease expiry removes it).
    assert.ok(r2 === undefined || (r2.stale && r2.revision < cut.router.revision), JSON.stringify(cut.routers));
    const at = loads[2].count.ok;
    await waitFor(() => loads[2].count.ok > at + 100, { what: 'the cut-off router serving its last table' });
    assert.equal(loads[2].count.failed, 0);
    // Lease expiry removes it from the set (and switches stop waiting for it).
    await waitFor(async () => !(await status()).routers.some((x) => x.id === 'r2'), { what: 'r2 to leave the set when its lease expires', timeoutMs: 30_000 });
    relay.heal();
    const caught = await waitFor(async () => { const s = await status(); return allAcked(s) ? s : null; }, { what: 'r2 to catch up', timeoutMs: 20_000 });
    assert.ok(caught.router.revision > before.router.revision);
    const events = await cli(['history', '--json'], { cwd: ctlDir });
    assert.equal(events.code, 0);
    assert.equal(failed(), 0);
  });

  await t.test('a router replaced under load (a newer process takes its listeners): 0 failed', async () => {
    const oldPid = routers[0].child.pid!;
    const next = await startRouter(routerDirs[0], 'r0', adminUrl);
    children.push(next.child);
    await waitFor(() => !alive(oldPid), { what: 'the old r0 to drain and exit', timeoutMs: 20_000 });
    await waitFor(async () => (await status()).routers.find((x) => x.id === 'r0')?.pid === next.child.pid, { what: 'r0 registered by the new process' });
    const r = await rollback();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.ack?.missing, []);
    assert.equal(failed(), 0, JSON.stringify(loads.map((l) => l.count.byKind)));
  });

  await t.test('a majority of etcd stopped: routers keep serving, a switch is refused with a clear error', async () => {
    const before = await status();
    await etcd.stopMember(1);
    await etcd.stopMember(2);
    const r = await rollback();
    assert.equal(r.code, 1, r.stdout);
    // Refused by etcd (no quorum), or — once no lease keepalive succeeded for 0.8 × leaseTtl — by the
    // controller itself: it can no longer prove it leads (issue 11), and answers reads only.
    assert.match(r.stdout + r.stderr, /CUTOVER_ERR_FLEET_UNAVAILABLE|CUTOVER_ERR_NOT_LEADER/);
    assert.match(r.stdout + r.stderr, /etcd .* did not answer|etcd is unreachable/);
    const after = await status();
    assert.deepEqual(after.live, before.live, 'the refused switch changed nothing');
    const at = loads.map((l) => l.count.ok);
    await waitFor(() => loads.every((l, i) => l.count.ok > at[i] + 100), { what: 'routers serving with etcd down' });
    const counts = await Promise.all(loads.splice(0).map((l) => l.stop()));
    const total = counts.reduce((n, c) => n + c.requests, 0);
    assert.equal(counts.reduce((n, c) => n + c.failed, 0), 0, JSON.stringify(counts.map((c) => c.byKind)));
    t.diagnostic(`${total} requests through 3 routers, 0 failed`);
  });
});

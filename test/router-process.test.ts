/**
 * The router as its own process on one machine (`cutover up` supervises a `cutover router`):
 * kill -9 of the controller under keep-alive load loses nothing and the router keeps serving its
 * last table; the next controller adopts the same router; a router started by hand takes over the
 * listeners (SO_REUSEPORT) while the old one drains, again with no failed request; every switch
 * is acknowledged by the router.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, TEST_TOKEN, alive, cli, freePort, freePorts, getJson, killAll, routersOf, serveShop, startDaemonProcess, staticConfigYaml, tempDir, waitFor, waitForHealth, writeConfig, type DaemonProcess } from './helpers.ts';
import { keepAliveLoad } from './load.ts';

interface RouterRow { id: string; pid: number; revision: number; stale: boolean; live: { color: string } | null; ackMs: number | null }
interface Status { live: { color: string; version: string } | null; router: { revision: number }; routers: RouterRow[] }

async function status(dir: string): Promise<Status> {
  const r = await cli(['status', '--json'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Status;
}

function allAcked(s: Status): boolean {
  return s.routers.length > 0 && s.routers.every((r) => r.revision === s.router.revision && !r.stale);
}

async function setup(t: import('node:test').TestContext) {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  const bluePort = await freePort();
  const greenPort = await freePort();
  const shops = [serveShop(bluePort, 'blue'), serveShop(greenPort, 'green')];
  const extra: ChildProcess[] = [];
  let daemon: DaemonProcess | null = null;
  t.after(async () => {
    await daemon?.stop('SIGKILL');
    for (const c of extra) c.kill('SIGKILL');
    killAll(routersOf(stateDir));
    for (const s of shops) s.kill('SIGKILL');
    cleanup();
  });
  await waitForHealth([bluePort, greenPort]);
  writeConfig(dir, staticConfigYaml(ports, bluePort, greenPort, { router: 'drainTimeout: 2s' }));
  return {
    dir, stateDir, live: `http://127.0.0.1:${ports.live}`, extra,
    start: async () => { daemon = await startDaemonProcess(dir); return daemon; },
    daemon: () => daemon,
  };
}

test('kill -9 of the controller under keep-alive load: 0 failed, the router keeps serving, the next controller adopts it', { timeout: 120_000 }, async (t) => {
  const s = await setup(t);
  let daemon = await s.start();
  assert.equal((await cli(['deploy', 'v1'], { cwd: s.dir })).code, 0);
  const before = await status(s.dir);
  assert.equal(before.routers.length, 1);
  const routerPid = before.routers[0].pid;
  assert.notEqual(routerPid, daemon.child.pid, 'the router is its own process');
  assert.ok(allAcked(before), 'the first release is acknowledged by the router');

  const load = keepAliveLoad(s.live, { connections: 16 });
  await waitFor(() => load.count.ok > 200, { what: 'load flowing' });
  daemon.child.kill('SIGKILL');
  await new Promise((r) => daemon.child.once('exit', r));
  const atKill = load.count.ok;
  await waitFor(() => load.count.ok > atKill + 500, { what: 'the router serving with no controller', timeoutMs: 20_000 });
  assert.ok(alive(routerPid), 'the router outlived the controller');

  daemon = await s.start();
  const after = await status(s.dir);
  assert.equal(after.routers[0].pid, routerPid, 'the same router process was adopted, not replaced');
  assert.ok(after.router.revision > before.router.revision, 'revisions continue from the router\'s');
  // Switches under load, each acknowledged.
  for (const v of ['v2', 'v3']) {
    const d = await cli(['deploy', v], { cwd: s.dir });
    assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.match(d.stdout, /acknowledged by 1\/1 router\(s\)/);
  }
  const rb = await cli(['rollback', '--json'], { cwd: s.dir });
  assert.equal(rb.code, 0, rb.stderr);
  const rbr = JSON.parse(rb.stdout) as { ack: { missing: string[]; acknowledged: string[] } };
  assert.deepEqual(rbr.ack.missing, []);
  assert.equal(rbr.ack.acknowledged.length, 1);
  assert.ok(allAcked(await status(s.dir)));
  const count = await load.stop();
  assert.equal(count.failed, 0, `failed requests: ${JSON.stringify(count.byKind)} of ${count.requests}`);
  assert.ok(count.ok > 1_000, `requests served: ${count.ok}`);
  // A graceful stop of `cutover up` stops its router too.
  await daemon.stop('SIGTERM');
  await waitFor(() => !alive(routerPid), { what: 'the router to stop with the controller', timeoutMs: 15_000 });
});

test('a router started by hand takes over the listeners under load: 0 failed, the old one drains and exits', { timeout: 120_000 }, async (t) => {
  const s = await setup(t);
  await s.start();
  assert.equal((await cli(['deploy', 'v1'], { cwd: s.dir })).code, 0);
  const oldPid = (await status(s.dir)).routers[0].pid;
  const load = keepAliveLoad(s.live, { connections: 16 });
  t.after(() => load.stop());
  await waitFor(() => load.count.ok > 200, { what: 'load flowing' });

  // The upgrade path: a newer `cutover router` on the same config and stateDir.
  const next = spawn(process.execPath, [BIN, 'router'], { cwd: s.dir, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  s.extra.push(next);
  let out = '';
  next.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  next.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor(() => out.includes('is up'), { what: `the new router to start: ${out}`, timeoutMs: 20_000 });
  await waitFor(() => !alive(oldPid), { what: 'the old router to drain and exit', timeoutMs: 20_000 });
  let seen: unknown = null;
  const s2 = await waitFor(async () => { const st = await status(s.dir); seen = st.routers; return st.routers[0]?.pid === next.pid ? st : null; }, { what: 'the controller to re-attach to the new router', timeoutMs: 10_000 })
    .catch((err: Error) => { throw new Error(`${err.message}: routers ${JSON.stringify(seen)}, new pid ${next.pid}\n${out.slice(-2000)}\n${readFileSync(path.join(s.stateDir, 'logs', 'router.log'), 'utf8').slice(-3000)}\nDAEMON ${s.daemon()?.output().slice(-3000)}`); });
  assert.equal(s2.routers.length, 1);
  const atTakeover = load.count.ok;
  await waitFor(() => load.count.ok > atTakeover + 300, { what: 'the new router serving' });
  const d = await cli(['deploy', 'v2'], { cwd: s.dir });
  assert.equal(d.code, 0, d.stdout + d.stderr);
  assert.match(d.stdout, /acknowledged by 1\/1 router\(s\)/);
  assert.equal((await getJson<{ color: string }>(`${s.live}/`)).color, 'green');
  const count = await load.stop();
  assert.equal(count.failed, 0, `failed requests: ${JSON.stringify(count.byKind)} of ${count.requests}`);
  assert.ok(count.versions['v1@green'] > 0 && count.versions['v1@blue'] > 0, JSON.stringify(count.versions));
});

test('a router that does not acknowledge in time is named: rollback exits 1, status says stale, a deploy waits for the operator', { timeout: 120_000 }, async (t) => {
  const s = await setup(t);
  await s.start();
  for (const v of ['v1', 'v2']) assert.equal((await cli(['deploy', v], { cwd: s.dir })).code, 0);
  const pid = (await status(s.dir)).routers[0].pid;
  // A router that cannot answer (stopped, not dead: its control socket stays open).
  process.kill(pid, 'SIGSTOP');
  t.after(() => { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } });
  const rb = await cli(['rollback'], { cwd: s.dir });
  assert.equal(rb.code, 1, rb.stdout + rb.stderr);
  assert.match(rb.stdout, /acknowledged by 0\/1 router\(s\), NOT by app-router/);
  const stale = await status(s.dir);
  assert.equal(stale.routers[0].stale, true);
  assert.ok(stale.routers[0].revision < stale.router.revision);
  const events = await cli(['history', '--json'], { cwd: s.dir });
  assert.equal(events.code, 0);
  process.kill(pid, 'SIGCONT');
  await waitFor(async () => allAcked(await status(s.dir)), { what: 'the router to catch up once it runs again' });

  // In a deployment the pipeline waits for the operator, naming the router.
  process.kill(pid, 'SIGSTOP');
  const started = await cli(['deploy', 'v3', '--no-wait'], { cwd: s.dir });
  assert.equal(started.code, 0, started.stderr);
  const waiting = await waitFor(async () => { const st = await status(s.dir) as Status & { deployment: { status: string } | null }; return st.deployment?.status === 'awaiting-promotion' ? st : null; }, { what: 'the deployment to wait for the operator', timeoutMs: 30_000 });
  assert.ok(waiting);
  process.kill(pid, 'SIGCONT');
  const promoted = await cli(['promote'], { cwd: s.dir });
  assert.equal(promoted.code, 0, promoted.stderr);
  await waitFor(async () => { const st = await status(s.dir) as Status & { deployment: unknown }; return st.deployment === null && st.live?.version === 'v3' && allAcked(st); }, { what: 'v3 live and acknowledged', timeoutMs: 30_000 });
});

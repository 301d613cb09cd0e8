/**
 * Damaged state, two daemons, half-started daemons (issue #15). Every test runs real `cutover up`
 * processes on a temp state directory, kills them with SIGKILL where a crash matters, damages the
 * files the way an unlucky disk or operator would, and checks that the next start refuses (exit
 * code, message), stops nothing, and that the documented way out (`cutover state check|restore`,
 * `--stop-unknown-instances`) brings the same live release back with the same processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { inspectSnapshot, listSnapshots } from '../src/store/snapshots.ts';
import { BIN, SHOP_V1, SHOP_V2, TEST_TOKEN, cli, configYaml, freePorts, get, getJson, instancesOf, killAll, tempDir, waitFor, writeConfig, type Ports } from './helpers.ts';

interface Up { child: ChildProcess; output: () => string; exited: Promise<number | null> }

/** `cutover up [args]` as a child process; `ready` resolves once it is up (or rejects with its output when it exits first). */
function up(cwd: string, args: string[] = []): Up & { ready: Promise<void> } {
  const child = spawn(process.execPath, [BIN, 'up', ...args], { cwd, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => { if (out.includes('is up')) { clearInterval(timer); resolve(); } }, 25);
    void exited.then((code) => { clearInterval(timer); reject(new Error(`cutover up exited with ${code}:\n${out}`)); });
    setTimeout(() => { clearInterval(timer); reject(new Error(`cutover up did not come up:\n${out}`)); }, 20_000).unref();
  });
  ready.catch(() => undefined);
  return { child, output: () => out, exited, ready };
}

/** A start that must fail: its exit code (within 15 s) and output. */
async function upFails(cwd: string, args: string[] = []): Promise<{ code: number | null; output: string; ms: number }> {
  const t0 = Date.now();
  const u = up(cwd, args);
  const timer = setTimeout(() => u.child.kill('SIGKILL'), 15_000);
  const code = await u.exited;
  clearTimeout(timer);
  return { code, output: u.output(), ms: Date.now() - t0 };
}

function kill9(u: Up): Promise<unknown> {
  u.child.kill('SIGKILL');
  return u.exited;
}

/** SIGTERM, and it must be gone within 15 s (else SIGKILL, and the test fails: a daemon that does not stop is a bug). */
async function stop(u: Up): Promise<void> {
  if (u.child.exitCode !== null || u.child.signalCode !== null) return;
  u.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([u.exited.then(() => false), new Promise<boolean>((r) => { timer = setTimeout(() => r(true), 15_000); })]);
  clearTimeout(timer);
  if (late) {
    u.child.kill('SIGKILL');
    await u.exited;
    throw new Error(`cutover up did not stop within 15 s of SIGTERM:\n${u.output().slice(-3000)}`);
  }
}

interface Setup { dir: string; stateDir: string; ports: Ports; v1: string; v2: string; cleanup: () => void; daemons: Up[] }

/** A state directory where v1 (blue, standby) and v2 (green, live) were deployed by a daemon that was then killed -9. */
async function deployedThenKilled(o: { walAfterV1?: (size: number) => void } = {}): Promise<Setup> {
  const { dir, cleanup } = tempDir('cutover-state-');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports, { instances: 1 }));
  // Release directories of our own, so a test can remove one.
  const v1 = path.join(dir, 'releases', 'v1');
  const v2 = path.join(dir, 'releases', 'v2');
  cpSync(SHOP_V1, v1, { recursive: true });
  cpSync(SHOP_V2, v2, { recursive: true });
  const s: Setup = { dir, stateDir: path.join(dir, '.cutover'), ports, v1, v2, cleanup, daemons: [] };
  const d = up(dir);
  s.daemons.push(d);
  await d.ready;
  assert.equal((await cli(['deploy', 'v1', '--path', v1], { cwd: dir })).code, 0);
  o.walAfterV1?.(statSync(path.join(s.stateDir, 'state.db-wal')).size);
  assert.equal((await cli(['deploy', 'v2', '--path', v2], { cwd: dir })).code, 0);
  // The snapshot of the switch to v2 is taken right after its commit, in the background.
  await waitFor(() => listSnapshots(s.stateDir).some((x) => inspectSnapshot(x.file).live?.version === 'v2'), { what: 'the snapshot of the switch to v2' });
  await kill9(d);
  return s;
}

async function teardown(s: Setup): Promise<void> {
  try {
    for (const d of s.daemons) await stop(d);
  } finally {
    killAll(instancesOf(s.stateDir));
    s.cleanup();
  }
}

async function liveVersion(ports: Ports): Promise<string> {
  return (await getJson<{ version: string }>(`http://127.0.0.1:${ports.live}/version`)).version;
}

/** After a refusal: `state check` says why, `state restore` puts the newest snapshot back, the next start adopts the same processes. */
async function restoreAndAdopt(s: Setup, pidsBefore: number[], expectLive: string): Promise<void> {
  const check = await cli(['state', 'check'], { cwd: s.dir });
  assert.equal(check.code, 1, check.stdout + check.stderr);
  assert.match(check.stdout, /✗ a start would refuse this state/);
  assert.match(check.stdout, /cutover state restore/);
  const restore = await cli(['state', 'restore'], { cwd: s.dir });
  assert.equal(restore.code, 0, restore.stdout + restore.stderr);
  assert.match(restore.stdout, /^restored state-g\d+-\d+\.db/);
  assert.ok(readdirSync(s.stateDir).some((f) => f.startsWith('damaged-')), 'the damaged files are kept aside');
  assert.equal((await cli(['state', 'check'], { cwd: s.dir })).code, 0);
  const d = up(s.dir);
  s.daemons.push(d);
  await d.ready;
  assert.equal(await liveVersion(s.ports), expectLive);
  assert.deepEqual(instancesOf(s.stateDir).sort(), [...pidsBefore].sort(), 'the same processes, adopted');
  const st = JSON.parse((await cli(['status', '--json'], { cwd: s.dir })).stdout) as { live: { version: string }; standby: { version: string; state: string } };
  assert.equal(st.live.version, expectLive);
}

for (const [what, damage] of [
  ['emptied (0 bytes), its WAL kept', (s: Setup) => truncateSync(path.join(s.stateDir, 'state.db'), 0)],
  ['emptied (0 bytes) with its WAL removed', (s: Setup) => {
    truncateSync(path.join(s.stateDir, 'state.db'), 0);
    rmSync(path.join(s.stateDir, 'state.db-wal'), { force: true });
    rmSync(path.join(s.stateDir, 'state.db-shm'), { force: true });
  }],
  ['deleted with its WAL', (s: Setup) => {
    for (const f of ['state.db', 'state.db-wal', 'state.db-shm']) rmSync(path.join(s.stateDir, f), { force: true });
  }],
  ['truncated to 8 KiB after a checkpoint', (s: Setup) => {
    const db = new DatabaseSync(path.join(s.stateDir, 'state.db'));
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    db.close();
    truncateSync(path.join(s.stateDir, 'state.db'), 8_192);
    rmSync(path.join(s.stateDir, 'state.db-wal'), { force: true });
    rmSync(path.join(s.stateDir, 'state.db-shm'), { force: true });
  }],
] as const) {
  test(`state.db ${what}: the start refuses (exit 5) and stops nothing; restore brings v2 back with the same processes`, { timeout: 120_000 }, async () => {
    const s = await deployedThenKilled();
    try {
      const pids = instancesOf(s.stateDir);
      assert.equal(pids.length, 2);
      damage(s);
      const r = await upFails(s.dir);
      assert.equal(r.code, 5, r.output);
      assert.match(r.output, /refusing to start|is damaged/);
      assert.match(r.output, /cutover state restore/);
      assert.deepEqual(instancesOf(s.stateDir).sort(), pids.sort(), 'nothing was stopped');
      await assert.rejects(get(`http://127.0.0.1:${s.ports.live}/`), 'it did not stay up serving 503s');
      await restoreAndAdopt(s, pids, 'v2');
    } finally {
      await teardown(s);
    }
  });
}

test('a WAL cut short (the last deployment lost): refused as older than recorded, not started on v1 with v2 stopped', { timeout: 120_000 }, async () => {
  let walAfterV1 = 0;
  const s = await deployedThenKilled({ walAfterV1: (n) => { walAfterV1 = n; } });
  try {
    const pids = instancesOf(s.stateDir);
    const wal = path.join(s.stateDir, 'state.db-wal');
    assert.ok(walAfterV1 > 0 && statSync(wal).size > walAfterV1, `WAL ${statSync(wal).size} bytes, ${walAfterV1} after v1`);
    truncateSync(wal, walAfterV1);
    // Without the marker this database is self-consistent: v1 live on blue, green empty.
    const db = new DatabaseSync(path.join(s.stateDir, 'state.db'), { readOnly: true });
    const live = db.prepare("SELECT color, version FROM environments WHERE role = 'live'").get() as { version: string };
    db.close();
    assert.equal(live.version, 'v1', 'the cut WAL brings back the older state');
    const r = await upFails(s.dir);
    assert.equal(r.code, 5, r.output);
    assert.match(r.output, /older than the state last recorded: generation \d+, but state\.marker\.json records generation \d+/);
    assert.match(r.output, /when v2 was live on green/);
    assert.deepEqual(instancesOf(s.stateDir).sort(), pids.sort(), 'v2 was not stopped');
    await restoreAndAdopt(s, pids, 'v2');
  } finally {
    await teardown(s);
  }
});

test('instances the state does not account for are never stopped without --stop-unknown-instances', { timeout: 120_000 }, async () => {
  const s = await deployedThenKilled();
  try {
    const pids = instancesOf(s.stateDir);
    // Put back, deliberately, the first snapshot with v1 live: v2's process is unknown to it.
    const report = JSON.parse((await cli(['state', 'check', '--json'], { cwd: s.dir })).stdout) as { snapshots: { name: string; takenAt: number; live: { version: string } | null }[] };
    const older = report.snapshots.filter((x) => x.live?.version === 'v1').sort((a, b) => a.takenAt - b.takenAt)[0];
    assert.ok(older, JSON.stringify(report.snapshots));
    const restore = await cli(['state', 'restore', older.name], { cwd: s.dir });
    assert.equal(restore.code, 0, restore.stdout + restore.stderr);
    const r = await upFails(s.dir);
    assert.equal(r.code, 5, r.output);
    assert.match(r.output, /not accounted for by state\.db: green-0 v2 \(pid \d+\)/);
    assert.match(r.output, /--stop-unknown-instances/);
    assert.deepEqual(instancesOf(s.stateDir).sort(), pids.sort());
    const d = up(s.dir, ['--stop-unknown-instances']);
    s.daemons.push(d);
    await d.ready;
    await waitFor(() => instancesOf(s.stateDir).length === 1, { what: 'the unknown v2 instance stopped' });
  } finally {
    await teardown(s);
  }
});

test('a second daemon on the same state directory (other ports) exits 4 naming the first one\'s pid; the first is untouched; after a kill -9 the lock is free', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = tempDir('cutover-lock-');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports, { instances: 1 }));
  const second = tempDir('cutover-lock-2-');
  const other = second.dir;
  const ports2 = await freePorts();
  // Same stateDir (absolute), other listeners.
  writeConfig(other, configYaml(ports2, { instances: 1 }).replace('stateDir: .cutover', `stateDir: ${path.join(dir, '.cutover')}`));
  const stateDir = path.join(dir, '.cutover');
  const first = up(dir);
  const daemons: Up[] = [first];
  try {
    await first.ready;
    assert.equal((await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: dir })).code, 0);
    const run = cli(['deploy', 'v2', '--path', SHOP_V2, '--no-wait'], { cwd: dir });
    const r = await upFails(other);
    assert.equal(r.code, 4, r.output);
    assert.match(r.output, new RegExp(`a daemon is already running \\(pid ${first.child.pid}\\) on the state directory ${stateDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    await assert.rejects(get(`http://127.0.0.1:${ports2.live}/`), 'the second never listened');
    assert.equal((await run).code, 0);
    const statusOf = async () => JSON.parse((await cli(['status', '--json'], { cwd: dir })).stdout) as { live: { version: string }; deployment: unknown };
    await waitFor(async () => { const st = await statusOf(); return st.live.version === 'v2' && st.deployment === null; }, { what: 'v2 live', timeoutMs: 20_000, intervalMs: 200 });
    const status = JSON.parse((await cli(['status', '--json'], { cwd: dir })).stdout) as { live: { version: string } };
    assert.equal(status.live.version, 'v2', 'the first daemon\'s deployment went through');
    assert.equal(instancesOf(stateDir).length, 2, 'no duplicated instances');
    await kill9(first);
    const second = up(other);
    daemons.push(second);
    await second.ready;
    assert.equal(await liveVersion(ports2), 'v2', 'the second adopts once the first is gone');
  } finally {
    for (const d of daemons) await stop(d).catch(() => undefined);
    killAll(instancesOf(stateDir));
    cleanup();
    second.cleanup();
  }
});

function occupy(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

for (const which of ['admin', 'live'] as const) {
  test(`${which} port taken: cutover up exits 1 at once with the reason, serves nothing, leaves the instances; the next start adopts them`, { timeout: 120_000 }, async () => {
    const s = await deployedThenKilled();
    const blocker = await occupy(s.ports[which]);
    try {
      const pids = instancesOf(s.stateDir);
      const r = await upFails(s.dir);
      assert.equal(r.code, 1, r.output);
      assert.match(r.output, new RegExp(`EADDRINUSE.*${s.ports[which]}|${s.ports[which]}.*EADDRINUSE`));
      assert.ok(r.ms < 10_000, `exited after ${r.ms} ms`);
      if (which === 'admin') await assert.rejects(get(`http://127.0.0.1:${s.ports.live}/`), 'the router never listened');
      else await assert.rejects(get(`http://127.0.0.1:${s.ports.admin}/api/v1/status`), 'the admin API was closed again');
      assert.deepEqual(instancesOf(s.stateDir).sort(), pids.sort(), 'instances left running');
      await new Promise<void>((r2) => blocker.close(() => r2()));
      const d = up(s.dir);
      s.daemons.push(d);
      await d.ready;
      assert.equal(await liveVersion(s.ports), 'v2');
      assert.deepEqual(instancesOf(s.stateDir).sort(), pids.sort(), 'adopted, not restarted');
    } finally {
      blocker.close();
      await teardown(s);
    }
  });
}

test('the live release directory is gone and its instance died with the daemon: the daemon still comes up and fails over to the warm standby', { timeout: 120_000 }, async () => {
  const s = await deployedThenKilled();
  try {
    const st = new DatabaseSync(path.join(s.stateDir, 'state.db'), { readOnly: true });
    const green = st.prepare("SELECT pid FROM instances WHERE color = 'green'").all() as { pid: number }[];
    st.close();
    killAll(green.map((g) => g.pid));
    await waitFor(() => instancesOf(s.stateDir).length === 1, { what: 'the green instance gone' });
    rmSync(s.v2, { recursive: true, force: true });
    const d = up(s.dir);
    s.daemons.push(d);
    await d.ready;
    assert.equal(await liveVersion(s.ports), 'v1', 'the standby serves');
    const status = JSON.parse((await cli(['status', '--json'], { cwd: s.dir })).stdout) as { live: { color: string; version: string } };
    assert.deepEqual([status.live.color, status.live.version], ['blue', 'v1']);
    const events = JSON.parse((await cli(['history', '--json'], { cwd: s.dir })).stdout) as unknown;
    assert.ok(events);
    assert.ok(existsSync(path.join(s.stateDir, 'state.db')));
  } finally {
    await teardown(s);
  }
});

/**
 * Issue 16: the standby stays warm until the candidate has switched. A deploy whose health never
 * passes, one that crashes at start, an abort and a kill -9 of the daemon before the switch all
 * leave live and standby as they were, and a rollback right after starts nothing. The real
 * `cutover` binary against a real daemon process, real instance processes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../src/config/load.ts';
import { Daemon } from '../src/daemon/daemon.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { AdminClient } from '../src/api/client.ts';
import type { DeploymentRecord } from '../src/store/types.ts';
import {
  FIXTURES, SHOP_V1, SHOP_V2, TEST_TOKEN, cli, configYaml, freePorts, getJson, instancesOf, killAll, startDaemonProcess,
  tempDir, waitFor, writeConfig, type DaemonProcess, type Ports,
} from './helpers.ts';

interface Status {
  live: { color: string; version: string } | null;
  standby: { color: string; version: string; state: string; besideCandidate?: string | null } | null;
  deployment: DeploymentRecord | null;
  environments: Record<string, { role: string; version: string | null; healthy: number; instances: { id: string; pid: number }[] }>;
}

let dir: string;
let stateDir: string;
let ports: Ports;
let daemon: DaemonProcess;
let cleanup: () => void;
const daemonEnv = {};

const status = async (): Promise<Status> => {
  const r = await cli(['status', '--json'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Status;
};
const pidsOf = (s: Status, color: string) => s.environments[color].instances.map((i) => i.pid).sort();
const running = () => instancesOf(stateDir).sort();

before(async () => {
  const t = tempDir();
  dir = t.dir;
  cleanup = t.cleanup;
  stateDir = path.join(dir, '.cutover');
  // startTimeout: the healthy releases get it on a busy machine; never-healthy waits it out once.
  ports = await freePorts();
  writeConfig(dir, configYaml(ports, { startTimeout: '10s', drainTimeout: '1s' }));
  daemon = await startDaemonProcess(dir, daemonEnv);
  for (const [v, p] of [['v1', SHOP_V1], ['v2', SHOP_V2]]) {
    const r = await cli(['deploy', v, '--path', p], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  }
});

after(async () => {
  await daemon?.stop('SIGTERM');
  killAll(instancesOf(stateDir));
  cleanup?.();
});

/** The standby is warm with exactly the processes it had, and a rollback to it starts nothing. */
async function assertWarmAndRollBack(standby: { color: string; version: string }, pids: number[]): Promise<void> {
  const s = await status();
  assert.deepEqual(s.standby && [s.standby.color, s.standby.version, s.standby.state], [standby.color, standby.version, 'warm']);
  assert.equal(s.environments[standby.color].role, 'standby');
  assert.deepEqual(pidsOf(s, standby.color), pids, 'the standby runs the very processes it ran before the deploy');
  await waitFor(async () => (await status()).environments[standby.color].healthy === pids.length, { what: 'standby healthy' });
  const text = await cli(['status'], { cwd: dir });
  assert.match(text.stdout, new RegExp(`standby: ${standby.version} on ${standby.color}, warm`));
  const before = running();
  const rb = await cli(['rollback', '--json'], { cwd: dir });
  assert.equal(rb.code, 0, rb.stderr);
  const r = JSON.parse(rb.stdout) as { restarted: boolean; live: { color: string; version: string } };
  assert.equal(r.restarted, false, 'instant: nothing was started');
  assert.deepEqual(r.live, standby);
  assert.deepEqual(running(), before, 'no process started or stopped by the rollback');
  const served = await getJson<{ version: string }>(`http://127.0.0.1:${ports.live}/`);
  assert.equal(served.version, standby.version);
}

test('a deploy whose health never passes exits 1 and leaves the standby warm; rollback starts nothing', { timeout: 60_000 }, async () => {
  const s0 = await status();
  assert.deepEqual([s0.live?.color, s0.standby?.color, s0.standby?.version], ['green', 'blue', 'v1']);
  const standbyPids = pidsOf(s0, 'blue');
  const all = running();
  const r = await cli(['deploy', 'v3', '--path', path.join(FIXTURES, 'never-healthy')], { cwd: dir });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /blue \(v1\) stays warm beside v3/);
  assert.match(r.stdout, /blue \(v1\) is still the warm standby/);
  assert.doesNotMatch(r.stdout, /stopped to make room/);
  await waitFor(() => running().length === all.length, { what: 'the candidate processes to stop' });
  assert.deepEqual(running(), all, 'live and standby run the same processes as before');
  await assertWarmAndRollBack({ color: 'blue', version: 'v1' }, standbyPids);
});

test('a deploy that crashes at start exits 1, quotes its last log line and log path, and leaves the standby warm', { timeout: 60_000 }, async () => {
  // After the rollback above: live v1 on blue, standby v2 on green.
  const s0 = await status();
  assert.deepEqual([s0.live?.version, s0.standby?.color, s0.standby?.version], ['v1', 'green', 'v2']);
  const standbyPids = pidsOf(s0, 'green');
  const r = await cli(['deploy', 'v4', '--path', path.join(FIXTURES, 'crash-on-start')], { cwd: dir });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /candidate instance green-\d of v4 exited with code 3 during (provision|health); last log line: "fatal: cannot start" \(log: .*\.cutover\/logs\/green-\d\.log\)/);
  // The candidate took the slots the held standby does not use: its own log files.
  assert.match(r.stdout, /green-[23]\.log/);
  await assertWarmAndRollBack({ color: 'green', version: 'v2' }, standbyPids);
});

test('while a deploy runs, the standby runs beside the candidate and status says so; abort keeps it', { timeout: 60_000 }, async () => {
  // Live v2 on green, standby v1 on blue.
  const s0 = await status();
  const standbyPids = pidsOf(s0, 'blue');
  // --manual: the candidate waits for `cutover promote` for as long as the test looks at it
  // (a slow start would race the health timeout on a busy machine).
  const started = await cli(['deploy', 'v5', '--path', SHOP_V2, '--manual', '--no-wait'], { cwd: dir });
  assert.equal(started.code, 0, started.stderr);
  await waitFor(async () => (await status()).deployment?.status === 'awaiting-promotion', { timeoutMs: 30_000, what: 'the candidate waiting for promotion' });
  assert.equal(running().length, 6, 'candidate processes beside live and standby');
  const mid = await status();
  assert.deepEqual(mid.standby && [mid.standby.color, mid.standby.version, mid.standby.state, mid.standby.besideCandidate], ['blue', 'v1', 'warm', 'v5']);
  assert.equal(mid.environments.blue.role, 'candidate');
  assert.match((await cli(['status'], { cwd: dir })).stdout, /standby: v1 on blue, warm, running beside the candidate v5/);
  const ab = await cli(['abort'], { cwd: dir });
  assert.equal(ab.code, 0, ab.stderr);
  await waitFor(async () => (await status()).deployment === null, { what: 'the abort to finish' });
  await assertWarmAndRollBack({ color: 'blue', version: 'v1' }, standbyPids);
});

test('kill -9 of the daemon before the switch: the restarted daemon keeps the standby as the rollback target', { timeout: 90_000 }, async () => {
  // Live v1 on blue, standby v2 on green.
  const s0 = await status();
  assert.deepEqual([s0.live?.version, s0.standby?.color, s0.standby?.version], ['v1', 'green', 'v2']);
  const standbyPids = pidsOf(s0, 'green');
  const started = await cli(['deploy', 'v6', '--path', SHOP_V1, '--manual', '--no-wait'], { cwd: dir });
  assert.equal(started.code, 0, started.stderr);
  await waitFor(async () => (await status()).deployment?.status === 'awaiting-promotion', { timeoutMs: 30_000, what: 'the candidate waiting for promotion' });
  assert.equal(running().length, 6, 'candidate processes');
  daemon.child.kill('SIGKILL');
  await new Promise((r) => daemon.child.once('exit', r));
  daemon = await startDaemonProcess(dir, daemonEnv);
  await waitFor(() => running().length === 4, { timeoutMs: 30_000, what: 'the interrupted candidate to be stopped' });
  const h = JSON.parse((await cli(['history', '--json'], { cwd: dir })).stdout) as { deployments: DeploymentRecord[] };
  assert.equal(h.deployments[0].version, 'v6');
  assert.equal(h.deployments[0].status, 'interrupted');
  await assertWarmAndRollBack({ color: 'green', version: 'v2' }, standbyPids);
});

test('a successful deploy stops the held standby only after its switch', { timeout: 60_000 }, async () => {
  // Live v2 on green, standby v1 on blue.
  const s0 = await status();
  const oldStandby = pidsOf(s0, 'blue');
  const r = await cli(['deploy', 'v7', '--path', SHOP_V1], { cwd: dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const switchAt = r.stdout.indexOf('✓ switch');
  const stoppedAt = r.stdout.indexOf('blue (v1) stopped: v7 replaced it');
  assert.ok(switchAt > 0 && stoppedAt > switchAt, `the held standby stops after the switch:\n${r.stdout}`);
  await waitFor(() => running().length === 4, { what: 'the held standby to stop' });
  assert.ok(oldStandby.every((p) => !running().includes(p)), 'the old standby processes are gone');
  const s = await status();
  assert.deepEqual([s.live?.color, s.live?.version, s.standby?.color, s.standby?.version], ['blue', 'v7', 'green', 'v2']);
});

test('standby.keepWarmDuringDeploy: false stops the standby to make room (tight hosts)', { timeout: 60_000 }, async () => {
  const t = tempDir();
  const p = await freePorts();
  const config = parseConfig(configYaml(p, { startTimeout: '10s', extra: '  keepWarmDuringDeploy: false' }), { file: 'cutover.yaml', baseDir: t.dir });
  assert.equal(config.standby.keepWarmDuringDeploy, false);
  const d = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
  const client = new AdminClient({ baseUrl: d.adminUrl(), token: TEST_TOKEN, actor: 'test' });
  try {
    for (const [v, rel] of [['v1', SHOP_V1], ['v2', SHOP_V2], ['v3', path.join(FIXTURES, 'never-healthy')]]) {
      await client.call('POST', '/deployments', { version: v, path: rel });
      await d.controller.current()?.done;
    }
    const events = d.controller.events({ limit: 1000 }).map((e) => e.reason);
    assert.ok(events.some((e) => /blue \(v1\) is stopped to make room for v3 \(standby.keepWarmDuringDeploy: false\)/.test(e)), events.join('\n'));
    const s = d.controller.status();
    assert.deepEqual(s.standby && [s.standby.color, s.standby.state], ['blue', 'retired']);
  } finally {
    await client.close();
    await d.stop({ stopInstances: true });
    killAll(instancesOf(config.stateDir));
    t.cleanup();
  }
});

test('kill -9 of the daemon right after the switch: the restarted daemon stops the replaced standby, keeps the new one', { timeout: 90_000 }, async () => {
  const t = tempDir();
  const sd = path.join(t.dir, '.cutover');
  const p = await freePorts();
  writeConfig(t.dir, configYaml(p, { startTimeout: '30s', drainTimeout: '1s' }));
  // Test-only fault point (src/controller/fault-points.ts): SIGKILL itself after v3's route swap.
  let d = await startDaemonProcess(t.dir, { CUTOVER_TEST_CRASH_AT: 'drain:v3' });
  try {
    for (const [v, rel] of [['v1', SHOP_V1], ['v2', SHOP_V2]]) assert.equal((await cli(['deploy', v, '--path', rel], { cwd: t.dir })).code, 0);
    const s0 = JSON.parse((await cli(['status', '--json'], { cwd: t.dir })).stdout) as Status;
    const replaced = pidsOf(s0, 'blue'); // v1, the standby v3 replaces
    const kept = pidsOf(s0, 'green'); // v2, live until v3's switch, then the standby
    const crashed = await cli(['deploy', 'v3', '--path', SHOP_V1], { cwd: t.dir });
    assert.notEqual(crashed.code, 0, 'the daemon died under the deploy');
    await new Promise((r) => { if (d.child.exitCode !== null || d.child.signalCode !== null) r(null); else d.child.once('exit', r); });
    assert.ok(replaced.every((pid) => instancesOf(sd).includes(pid)), 'the replaced standby was still running at the crash');
    d = await startDaemonProcess(t.dir);
    await waitFor(() => replaced.every((pid) => !instancesOf(sd).includes(pid)), { what: 'the replaced standby to be stopped' });
    const s = JSON.parse((await cli(['status', '--json'], { cwd: t.dir })).stdout) as Status;
    assert.deepEqual([s.live?.color, s.live?.version, s.standby?.color, s.standby?.version, s.standby?.state], ['blue', 'v3', 'green', 'v2', 'warm']);
    assert.deepEqual(pidsOf(s, 'green'), kept, 'the new standby is the very processes that were live');
    await waitFor(() => instancesOf(sd).length === 4, { what: 'live and standby only' });
    const rb = JSON.parse((await cli(['rollback', '--json'], { cwd: t.dir })).stdout) as { restarted: boolean };
    assert.equal(rb.restarted, false);
  } finally {
    await d.stop('SIGTERM');
    killAll(instancesOf(sd));
    t.cleanup();
  }
});

test('every live instance down during a deploy: the deploy gives the held standby back and it takes the traffic (promise 2)', { timeout: 90_000 }, async () => {
  const t = tempDir();
  const sd = path.join(t.dir, '.cutover');
  const p = await freePorts();
  writeConfig(t.dir, configYaml(p, { startTimeout: '60s', drainTimeout: '1s' }));
  // A live release whose health check fails once a file named `down` appears in its directory:
  // down for good (a crash would be restarted and race the failover), and nothing is killed.
  const toggle = path.join(t.dir, 'toggle');
  mkdirSync(toggle);
  writeFileSync(path.join(toggle, 'package.json'), '{ "type": "module" }');
  writeFileSync(path.join(toggle, 'server.js'), [
    "import http from 'node:http';",
    "import { existsSync } from 'node:fs';",
    'http.createServer((req, res) => {',
    "  const down = req.url === '/health' && existsSync('down');",
    "  res.writeHead(down ? 503 : 200, { 'content-type': 'application/json' });",
    "  res.end(JSON.stringify({ version: process.env.CUTOVER_VERSION, color: process.env.CUTOVER_COLOR }));",
    "}).listen(Number(process.env.PORT), '127.0.0.1');",
    "process.on('SIGTERM', () => process.exit(0));",
  ].join('\n'));
  const d = await startDaemonProcess(t.dir, daemonEnv);
  try {
    assert.equal((await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: t.dir })).code, 0);
    assert.equal((await cli(['deploy', 'v2', '--path', toggle], { cwd: t.dir })).code, 0);
    const started = await cli(['deploy', 'v3', '--path', SHOP_V2, '--manual', '--no-wait'], { cwd: t.dir });
    assert.equal(started.code, 0, started.stderr);
    await waitFor(async () => (JSON.parse((await cli(['status', '--json'], { cwd: t.dir })).stdout) as Status).deployment?.status === 'awaiting-promotion', { timeoutMs: 30_000, what: 'the candidate waiting for promotion' });
    assert.equal(instancesOf(sd).length, 6, 'the candidate beside live and the held standby');
    writeFileSync(path.join(toggle, 'down'), '');
    const s = await waitFor(async () => {
      const st = JSON.parse((await cli(['status', '--json'], { cwd: t.dir })).stdout) as Status;
      return st.live?.color === 'blue' && st.deployment === null ? st : null;
    }, { timeoutMs: 30_000, what: 'the failover to the held standby' });
    assert.deepEqual([s.live?.version, s.environments.blue.role], ['v1', 'live']);
    assert.equal((await getJson<{ version: string }>(`http://127.0.0.1:${p.live}/`)).version, 'v1');
    const h = JSON.parse((await cli(['history', '--json'], { cwd: t.dir })).stdout) as { deployments: DeploymentRecord[] };
    assert.deepEqual([h.deployments[0].version, h.deployments[0].status], ['v3', 'aborted']);
    assert.match(h.deployments[0].error?.message ?? '', /every live instance of green is down/);
  } finally {
    await d.stop('SIGTERM');
    killAll(instancesOf(sd));
    t.cleanup();
  }
});

/**
 * Issue 16: the standby stays warm until the candidate has switched. A deploy whose health never
 * passes, one that crashes at start, an abort and a kill -9 of the daemon before the switch all
 * leave live and standby as they were, and a rollback right after starts nothing. The real
 * `cutover` binary against a real daemon process, real instance processes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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
// slow-start listens after SLOW_START_MS: long enough to stay a candidate while we look at it.
const daemonEnv = { SLOW_START_MS: '60000' };

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
  ports = await freePorts();
  writeConfig(dir, configYaml(ports, { startTimeout: '3s', drainTimeout: '1s' }));
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
  const started = await cli(['deploy', 'v5', '--path', path.join(FIXTURES, 'slow-start'), '--no-wait'], { cwd: dir });
  assert.equal(started.code, 0, started.stderr);
  await waitFor(() => running().length === 6, { what: 'candidate processes beside live and standby' });
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
  const started = await cli(['deploy', 'v6', '--path', path.join(FIXTURES, 'slow-start'), '--no-wait'], { cwd: dir });
  assert.equal(started.code, 0, started.stderr);
  await waitFor(() => running().length === 6, { what: 'candidate processes' });
  daemon.child.kill('SIGKILL');
  await new Promise((r) => daemon.child.once('exit', r));
  daemon = await startDaemonProcess(dir, daemonEnv);
  await waitFor(() => running().length === 4, { what: 'the interrupted candidate to be stopped' });
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
  const config = parseConfig(configYaml(p, { startTimeout: '2s', extra: '  keepWarmDuringDeploy: false' }), { file: 'cutover.yaml', baseDir: t.dir });
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

/**
 * kill -9 of the daemon: the instances keep running, the next daemon serves the same live
 * colour first, adopts the instances it recorded (no orphans, no duplicates), and history is intact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Agent, request } from 'undici';
import { FIXTURES, SHOP_V1, SHOP_V2, cli, configYaml, freePorts, getJson, instancesOf, killAll, startDaemonProcess, tempDir, waitFor, writeConfig } from './helpers.ts';

test('kill -9 of the daemon, then restart: same live colour, same instances, history intact', async () => {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports));
  const live = `http://127.0.0.1:${ports.live}`;
  let daemon = await startDaemonProcess(dir);
  try {
    assert.equal((await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: dir })).code, 0);
    const d2 = await cli(['deploy', 'v2', '--path', SHOP_V2], { cwd: dir });
    assert.equal(d2.code, 0, d2.stdout + d2.stderr);
    assert.match(d2.stdout, /switch/);
    const before = JSON.parse((await cli(['status', '--json'], { cwd: dir })).stdout) as { live: { color: string; version: string }; environments: Record<string, { instances: { id: string; pid: number }[] }> };
    assert.deepEqual([before.live.color, before.live.version], ['green', 'v2']);
    const pidsBefore = instancesOf(stateDir).sort();
    assert.equal(pidsBefore.length, 4, 'two instances each of live and standby');

    daemon.child.kill('SIGKILL');
    await new Promise((r) => daemon.child.once('exit', r));
    // The instances survive the daemon: they run in their own process groups.
    assert.deepEqual(instancesOf(stateDir).sort(), pidsBefore);

    daemon = await startDaemonProcess(dir);
    // The router serves the same live colour before anything else.
    const first = await getJson<{ version: string; color: string }>(`${live}/`);
    assert.deepEqual([first.color, first.version], ['green', 'v2']);
    const after = JSON.parse((await cli(['status', '--json'], { cwd: dir })).stdout) as typeof before;
    assert.deepEqual([after.live.color, after.live.version], [before.live.color, before.live.version]);
    for (const color of ['blue', 'green']) {
      assert.deepEqual(after.environments[color].instances.map((i) => i.pid).sort(), before.environments[color].instances.map((i) => i.pid).sort(), `${color} instances adopted, not restarted`);
    }
    assert.deepEqual(instancesOf(stateDir).sort(), pidsBefore, 'no orphans, no duplicates');
    const history = JSON.parse((await cli(['history', '--json'], { cwd: dir })).stdout) as { deployments: { version: string; status: string }[] };
    assert.deepEqual(history.deployments.map((d) => [d.version, d.status]), [['v2', 'succeeded'], ['v1', 'succeeded']]);

    // Rollback still works after adoption.
    const rb = await cli(['rollback'], { cwd: dir });
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal((await getJson<{ version: string }>(`${live}/`)).version, 'v1');

    // Graceful stop (SIGTERM) stops the instances: nothing is left behind.
    await daemon.stop('SIGTERM');
    await waitFor(() => instancesOf(stateDir).length === 0, { what: 'instances to stop', timeoutMs: 10_000 });
  } finally {
    await daemon.stop('SIGKILL');
    killAll(instancesOf(stateDir));
    cleanup();
  }
});

test('kill -9 during a deployment: the candidate is stopped, the deployment is marked interrupted, live keeps serving', async () => {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports, { startTimeout: '20s' }));
  const live = `http://127.0.0.1:${ports.live}`;
  let daemon = await startDaemonProcess(dir);
  const agent = new Agent({ connections: 4 });
  try {
    assert.equal((await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: dir })).code, 0);
    const slow = path.join(FIXTURES, 'slow-start');
    const started = await cli(['deploy', 'v2', '--path', slow, '--no-wait'], { cwd: dir, env: {} });
    assert.equal(started.code, 0, started.stderr);
    await waitFor(() => instancesOf(stateDir).length === 4, { what: 'candidate processes' });
    daemon.child.kill('SIGKILL');
    await new Promise((r) => daemon.child.once('exit', r));
    daemon = await startDaemonProcess(dir);
    const res = await request(`${live}/`, { dispatcher: agent });
    const body = (await res.body.json()) as { version: string; color: string };
    assert.deepEqual([body.version, body.color], ['v1', 'blue']);
    await waitFor(() => instancesOf(stateDir).length === 2, { what: 'the interrupted candidate to be stopped' });
    const history = JSON.parse((await cli(['history', '--json'], { cwd: dir })).stdout) as { deployments: { version: string; status: string; error: { message: string } | null }[] };
    assert.equal(history.deployments[0].version, 'v2');
    assert.equal(history.deployments[0].status, 'interrupted');
    assert.match(history.deployments[0].error?.message ?? '', /interrupted during (provision|health)/);
    const again = await cli(['deploy', 'v2', '--path', SHOP_V2], { cwd: dir });
    assert.equal(again.code, 0, 'a new deployment is possible after recovery');
  } finally {
    await agent.close();
    await daemon.stop('SIGTERM');
    killAll(instancesOf(stateDir));
    cleanup();
  }
});

/**
 * kill -9 of the daemon in the middle of a gradual switch: the split is not persisted, so the
 * restarted daemon serves 100 % of live traffic on the colour the store says is live, stops the
 * candidate and marks the deployment interrupted (DESIGN promise 5).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Pool } from 'undici';
import { FIXTURES, cli, configYaml, freePorts, instancesOf, killAll, startDaemonProcess, tempDir, waitFor, writeConfig } from './helpers.ts';

const SHADOW = path.join(FIXTURES, 'shadow');

test('kill -9 during a gradual switch: after restart every visitor is on the live colour, the candidate is stopped, the deployment interrupted', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports, { instances: 1, extra: 'switch: { steps: [50%], stepDuration: 30s, stickiness: cookie }' }));
  let daemon = await startDaemonProcess(dir);
  const pool = new Pool(`http://127.0.0.1:${ports.live}`, { connections: 4 });
  const versions = async (n: number) => {
    const seen = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const res = await pool.request({ path: '/version', method: 'GET' });
      const v = ((await res.body.json()) as { version: string }).version;
      seen.set(v, (seen.get(v) ?? 0) + 1);
    }
    return Object.fromEntries(seen);
  };
  try {
    assert.equal((await cli(['deploy', 'v1', '--path', SHADOW], { cwd: dir })).code, 0);
    assert.equal((await cli(['deploy', 'v2', '--path', SHADOW, '--no-wait'], { cwd: dir })).code, 0);
    await waitFor(async () => {
      const s = JSON.parse((await cli(['status', '--json'], { cwd: dir })).stdout) as { router: { split?: { share: number } } };
      return s.router.split?.share === 0.5;
    }, { what: 'the 50 % step', timeoutMs: 30_000 });
    const during = await versions(100);
    assert.ok((during.v2 ?? 0) > 20 && (during.v1 ?? 0) > 20, `both colours take new visitors at 50 %: ${JSON.stringify(during)}`);

    daemon.child.kill('SIGKILL');
    await new Promise((r) => daemon.child.once('exit', r));
    daemon = await startDaemonProcess(dir);
    assert.deepEqual(await versions(100), { v1: 100 }, 'the restarted router serves the stored live colour only');
    await waitFor(() => instancesOf(stateDir).length === 1, { what: 'the interrupted candidate to be stopped', timeoutMs: 15_000 });
    const h = JSON.parse((await cli(['history', '--json'], { cwd: dir })).stdout) as { deployments: { version: string; status: string }[] };
    assert.deepEqual([h.deployments[0].version, h.deployments[0].status], ['v2', 'interrupted']);
    const s = JSON.parse((await cli(['status', '--json'], { cwd: dir })).stdout) as { live: { version: string }; router: { split?: unknown } };
    assert.equal(s.live.version, 'v1');
    assert.equal(s.router.split, undefined);
  } finally {
    await pool.close();
    await daemon.stop('SIGKILL');
    killAll(instancesOf(stateDir));
    cleanup();
  }
});

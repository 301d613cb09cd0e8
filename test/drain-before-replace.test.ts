/**
 * Promise 1 across a rollback and an immediate redeploy: a request in flight on the colour that
 * just left the live listener finishes, even when the next deployment wants that colour at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { SHOP_V1, SHOP_V2, TEST_TOKEN, configYaml, freePorts, get, instancesOf, killAll, tempDir } from './helpers.ts';

test('a deployment waits for the draining colour before replacing it; the slow request completes', async () => {
  const { dir, cleanup } = tempDir();
  const config = parseConfig(configYaml(await freePorts(), { drainTimeout: '10s', instances: 1 }), { file: 'cutover.yaml', baseDir: dir });
  const daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
  try {
    assert.equal((await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done).status, 'succeeded');
    assert.equal((await daemon.controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done).status, 'succeeded');
    // A 1.5 s request starts on green (live, v2); then roll back to blue and redeploy at once.
    const slow = get(`${daemon.liveUrl()}/slow?ms=1500`);
    await new Promise((r) => setTimeout(r, 200));
    await daemon.controller.rollback({ actor: 'test' });
    const t0 = Date.now();
    const d3 = daemon.controller.deploy({ version: 'v3', path: SHOP_V2, actor: 'test' });
    assert.equal(d3.deployment.color, 'green', 'the next release goes to the colour that is draining');
    const res = await slow;
    assert.equal(res.status, 200, `the in-flight request finished: ${res.body}`);
    assert.equal(JSON.parse(res.body).version, 'v2');
    const done = await d3.done;
    assert.equal(done.status, 'succeeded');
    assert.ok(Date.now() - t0 >= 1_000, 'the deployment waited for the drain');
    const wait = daemon.controller.events({ deployment: done.id }).find((e) => e.type === 'drain.wait');
    assert.ok(wait, 'the wait is recorded');
  } finally {
    await daemon.stop({ stopInstances: true });
    killAll(instancesOf(config.stateDir));
    cleanup();
  }
});

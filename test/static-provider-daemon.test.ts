/**
 * The static provider end to end: environments run by something else (here: two pairs of
 * real HTTP servers in child processes), Cutover health-checks, switches and rolls back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { freePort, freePorts, getJson, serveShop, staticConfigYaml, tempDir, TEST_TOKEN, waitFor, waitForHealth } from './helpers.ts';

test('static targets: deploy records versions, switches and rolls back without starting anything', async () => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  const blue = [await freePort(), await freePort()];
  const green = [await freePort(), await freePort()];
  const children = [...blue.map((p) => serveShop(p, 'blue')), ...green.map((p) => serveShop(p, 'green'))];
  let daemon: Daemon | null = null;
  try {
    await waitForHealth([...blue, ...green], 'static targets up');
    const yaml = [
      'app: static-test',
      `router: { listen: 127.0.0.1:${ports.live}, preview: 127.0.0.1:${ports.preview}, drainTimeout: 1s }`,
      `admin: { listen: 127.0.0.1:${ports.admin} }`,
      'environments:',
      '  provider: static',
      '  static:',
      `    blue: [${blue.map((p) => `127.0.0.1:${p}`).join(', ')}]`,
      `    green: [${green.map((p) => `127.0.0.1:${p}`).join(', ')}]`,
      'health: { interval: 100ms, timeout: 1s }',
    ].join('\n');
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
    const d1 = await daemon.controller.deploy({ version: 'r1', path: null, actor: 'test' }).done;
    assert.equal(d1.status, 'succeeded');
    assert.equal((await getJson<{ color: string }>(`${daemon.liveUrl()}/`)).color, 'blue');
    const d2 = await daemon.controller.deploy({ version: 'r2', path: null, actor: 'test' }).done;
    assert.equal(d2.status, 'succeeded');
    assert.equal((await getJson<{ color: string }>(`${daemon.liveUrl()}/`)).color, 'green');
    const rb = await daemon.controller.rollback({ actor: 'test' });
    assert.equal(rb.restarted, false);
    assert.equal((await getJson<{ color: string }>(`${daemon.liveUrl()}/`)).color, 'blue');
    // Never route to nothing: with every green target down, a switch to green is refused.
    for (const c of children.slice(2)) c.kill('SIGKILL');
    await waitFor(() => !daemon!.health.isHealthy('green-0') && !daemon!.health.isHealthy('green-1'), { what: 'green marked down' });
    await assert.rejects(daemon.controller.rollback({ actor: 'test' }), /no healthy instance/);
    assert.equal((await getJson<{ color: string }>(`${daemon.liveUrl()}/`)).color, 'blue');
  } finally {
    await daemon?.stop({ stopInstances: true });
    for (const c of children) c.kill('SIGKILL');
    cleanup();
  }
});

test('failover: when every live instance dies, a healthy standby takes the traffic and it is recorded', async () => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  const blue = [await freePort()];
  const green = [await freePort()];
  const children = [serveShop(blue[0], 'blue'), serveShop(green[0], 'green')];
  let daemon: Daemon | null = null;
  try {
    await waitForHealth([...blue, ...green], 'static targets up');
    const yaml = staticConfigYaml(ports, blue[0], green[0]);
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
    await daemon.controller.deploy({ version: 'r1', path: null, actor: 'test' }).done;
    await daemon.controller.deploy({ version: 'r2', path: null, actor: 'test' }).done;
    assert.equal((await getJson<{ color: string }>(`${daemon.liveUrl()}/`)).color, 'green');
    children[1].kill('SIGKILL');
    await waitFor(async () => (await getJson<{ color: string }>(`${daemon!.liveUrl()}/`).catch(() => ({ color: '' }))).color === 'blue', { what: 'failover to blue', timeoutMs: 5_000 });
    const failover = daemon.controller.events({ limit: 10_000 }).find((e) => e.type === 'failover');
    assert.ok(failover, 'a failover event is recorded');
    assert.match(failover.reason, /every live instance of green is down/);
    assert.equal(daemon.controller.status().live?.color, 'blue');
  } finally {
    await daemon?.stop({ stopInstances: true });
    for (const c of children) c.kill('SIGKILL');
    cleanup();
  }
});

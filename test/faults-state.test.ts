/**
 * State writes that fail (issue #6; DESIGN promises 3 and 5): a switch is written ahead of the
 * route swap, so when the state database refuses writes (read-only or full disk) the switch is
 * refused and the router never moves — nothing is half done. The failure is injected with SQLite's
 * `PRAGMA query_only` (SqliteStore.setQueryOnly): the tests run as root, and root writes to a file
 * whatever its mode, so chmod cannot simulate it. Static provider: nothing to start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { request } from 'undici';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { freePort, freePorts, get, getJson, serveShop, staticConfigYaml, tempDir, TEST_TOKEN, waitFor, waitForHealth } from './helpers.ts';

test('with the state database refusing writes, rollback, promote, deploy and failover are refused and traffic never moves; the daemon stays up, and they work once writes do', async () => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  const blue = await freePort();
  const green = await freePort();
  const children: ChildProcess[] = [serveShop(blue, 'blue'), serveShop(green, 'green')];
  let daemon: Daemon | null = null;
  try {
    await waitForHealth([blue, green], 'targets up');
    const yaml = staticConfigYaml(ports, blue, green, { router: 'drainTimeout: 1s' });
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
    const d = daemon;
    await d.controller.deploy({ version: 'r1', path: null, actor: 'test' }).done;
    await d.controller.deploy({ version: 'r2', path: null, actor: 'test' }).done;
    const api = async (p: string, body: unknown) => {
      const r = await request(`${d.adminUrl()}/api/v1${p}`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: r.statusCode, json: (await r.body.json()) as { error?: { code: string; message: string } } };
    };
    const liveColour = async () => (await getJson<{ color: string }>(`${d.liveUrl()}/`)).color;
    const before = { table: d.router.table(), envs: d.store.environments(), events: d.store.events({ limit: 10_000 }).length, history: d.store.deployments() };
    assert.equal(await liveColour(), 'green');

    d.store.setQueryOnly(true);
    const rb = await api('/rollback', { reason: 'disk full drill' });
    assert.equal(rb.status, 503, JSON.stringify(rb.json));
    assert.equal(rb.json.error?.code, 'CUTOVER_ERR_STATE_WRITE');
    assert.match(rb.json.error?.message ?? '', /state could not be written/);
    assert.equal(d.router.table(), before.table, 'the route table object was never swapped');
    for (let i = 0; i < 10; i++) assert.equal(await liveColour(), 'green', 'traffic stays on green');
    // A direct controller call fails the same way (the API is not what protects it).
    await assert.rejects(d.controller.rollback({ actor: 'test' }), (e: Error & { code?: string }) => e.code === 'CUTOVER_ERR_STATE_WRITE');
    assert.throws(() => d.controller.deploy({ version: 'r3', path: null, actor: 'test' }), (e: Error & { code?: string }) => e.code === 'CUTOVER_ERR_STATE_WRITE');
    assert.equal(d.controller.current(), null, 'no deployment half started');

    d.store.setQueryOnly(false);
    assert.deepEqual(d.store.environments(), before.envs, 'roles unchanged');
    assert.deepEqual(d.store.deployments(), before.history, 'history unchanged');
    assert.equal(d.store.events({ limit: 10_000 }).length, before.events, 'no event half written');

    // A switch refused in the middle of a deployment: manual promotion, writes fail at promote.
    const r3 = d.controller.deploy({ version: 'r3', path: null, actor: 'test', manual: true });
    void r3.done.catch(() => undefined);
    await waitFor(() => d.controller.current()?.deployment.status === 'awaiting-promotion', { what: 'r3 waiting for promotion' });
    d.store.setQueryOnly(true);
    const pr = await api('/promote', {});
    assert.equal(pr.status, 503);
    assert.equal(await liveColour(), 'green');
    d.store.setQueryOnly(false);
    assert.equal(d.controller.current()?.deployment.status, 'awaiting-promotion', 'still waiting: nothing moved');

    // Writes work again: the same calls go through.
    const ok = await api('/promote', {});
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    await waitFor(async () => (await liveColour()) === 'blue', { what: 'r3 live on blue' });
    const back = await api('/rollback', {});
    assert.equal(back.status, 200, JSON.stringify(back.json));
    assert.equal(await liveColour(), 'green');

    // Every live instance dies while writes fail: a failover cannot be written ahead, so it does not
    // happen (503 from the router, never a route to an unpersisted colour) and the daemon stays up;
    // once writes work, the retried failover goes through and is recorded.
    d.store.setQueryOnly(true);
    children[1].kill('SIGKILL'); // the green target
    await waitFor(() => !d.health.isHealthy('green-0'), { what: 'green marked down' });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await get(`${d.liveUrl()}/`)).status, 503);
    assert.equal(d.store.environments().green.role, 'live');
    d.store.setQueryOnly(false);
    await waitFor(async () => (await liveColour().catch(() => '')) === 'blue', { what: 'the retried failover', timeoutMs: 5_000 });
    assert.ok(d.store.events({ limit: 10_000 }).some((e) => e.type === 'failover'), 'the failover is recorded');
  } finally {
    daemon?.store.setQueryOnly(false);
    await daemon?.stop({ stopInstances: true });
    for (const c of children) c.kill('SIGKILL');
    cleanup();
  }
});

/**
 * The plugin API as a plugin meets it in a real daemon: a read-only router view (no `swap`, by
 * type and at run time), a controller view that reads, records and extends the status, and
 * routes mounted under /api/v1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import type { PluginContext, PluginFactory } from '../src/plugin-api/plugin.ts';
import type { RouterView, DataPlane } from '../src/router/data-plane.ts';
import type { ControllerView } from '../src/plugin-api/controller-view.ts';
import { TEST_TOKEN, freePort, freePorts, staticConfigYaml, tempDir } from './helpers.ts';

// Type rules, checked by `tsc` (it fails when an expected error is no longer one).
function typeRules(router: RouterView, controller: ControllerView, plane: DataPlane): void {
  // @ts-expect-error a plugin's router view cannot swap the route table
  router.swap(router.table());
  // @ts-expect-error nor can a plugin reach the controller's pipeline calls
  controller.deploy({ version: 'v', path: null, actor: 'x' });
  plane.swap(plane.table()); // the controller's DataPlane can
}
void typeRules;

test('a plugin gets a read-only router view and a controller view, and its routes are served', { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  let seen: PluginContext | null = null;
  const probe: PluginFactory = (ctx) => {
    seen = ctx;
    ctx.controller.extendStatus('probe', () => ({ revision: ctx.router.table().revision }));
    return {
      extras: {
        routes: async (rc) => {
          if (rc.method !== 'GET' || rc.path !== '/probe') return false;
          ctx.controller.record({ type: 'probe', actor: rc.actor, reason: 'probed' });
          rc.send(200, { live: ctx.router.addresses().live.port, inFlight: ctx.router.inFlight('live'), rejections: ctx.router.rejections() });
          return true;
        },
      },
    };
  };
  const ports = await freePorts();
  const config = parseConfig(staticConfigYaml(ports, await freePort(), await freePort()), { file: 'cutover.yaml', baseDir: dir });
  const daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: [probe] });
  t.after(() => daemon.stop({ stopInstances: true }));

  const ctx = seen as PluginContext | null;
  assert.ok(ctx);
  assert.ok(!('swap' in ctx.router), 'no swap on the view, not even hidden');
  assert.ok(Object.isFrozen(ctx.router) && Object.isFrozen(ctx.router.stats));
  assert.notEqual(ctx.router as unknown, daemon.router as unknown, 'the view is not the Router itself');
  assert.deepEqual(ctx.router.table(), daemon.router.table());
  assert.equal(ctx.router.stats.query('live', 'blue', 0, Date.now()).requests, 0);

  const res = await request(`${daemon.adminUrl()}/api/v1/probe`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(await res.body.json(), { live: ports.live, inFlight: 0, rejections: {} });
  assert.equal(daemon.controller.events({ limit: 100 }).filter((e) => e.type === 'probe').length, 1);
  assert.deepEqual(daemon.controller.status().probe, { revision: daemon.router.table().revision });
});

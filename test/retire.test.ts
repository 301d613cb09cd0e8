/**
 * `cutover retire` (POST /api/v1/retire) on a real daemon without a database: refused while the
 * new release is still judged (its rollback target stays), then retires the warm standby (stopped,
 * recorded with the actor), and refused again when there is no warm standby left.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { isCutoverError } from '../src/lib/errors.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { ROOT, SHOP_V1, SHOP_V2, TEST_TOKEN, cli, configYaml, freePorts, instancesOf, killAll, tempDir, waitFor } from './helpers.ts';

let daemon: Daemon;
let client: AdminClient;
let stateDir: string;
let cleanup: () => void;

before(async () => {
  const t = tempDir();
  cleanup = t.cleanup;
  // A bake that can only be inconclusive (it never gets enough requests) and then continues: it holds the analysis phase for 4 s.
  const yaml = configYaml(await freePorts(), { instances: 1, extra: 'analysis:\n  window: 4s\n  interval: 1s\n  minRequests: 1000000\n  inconclusive: continue\n' });
  const config = parseConfig(yaml, { file: 'cutover.yaml', baseDir: t.dir });
  stateDir = config.stateDir;
  daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
  client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN, actor: 'ops' });
});

after(async () => {
  await client?.close();
  await daemon?.stop({ stopInstances: true });
  killAll(instancesOf(stateDir));
  cleanup?.();
});

test('retire is refused while the new release is judged, then retires the warm standby; a second retire is refused', async () => {
  const d1 = await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
  assert.equal(d1.status, 'succeeded', JSON.stringify(d1.error));
  const run = daemon.controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' });
  await waitFor(() => daemon.controller.current()?.deployment.phase === 'analysis', { timeoutMs: 30_000, what: 'the analysis phase' });
  await assert.rejects(client.call('POST', '/retire', {}), (err: unknown) => {
    assert.ok(isCutoverError(err, 'CUTOVER_ERR_CONFLICT'), String(err));
    assert.match((err as Error).message, /is in analysis: its rollback target (blue|green) \(v1\) stays until it is judged/);
    return true;
  });
  assert.equal((await run.done).status, 'succeeded');

  const out = await cli(['retire', '--reason', 'v2 looks good'], { cwd: ROOT, env: { CUTOVER_ADMIN_URL: daemon.adminUrl() } });
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^retired (blue|green) \(v1\); a rollback now restarts it\n$/);
  const st = daemon.controller.status();
  assert.equal(st.standby?.state, 'retired');
  assert.equal(st.environments[st.standby!.color].instances.length, 0, 'its instances are stopped');
  const [retire] = daemon.controller.events({ limit: 10_000 }).filter((e) => e.type === 'retire');
  assert.match(retire.reason, /v1\) retired: v2 looks good/);
  assert.ok(daemon.controller.events({ limit: 10_000 }).some((e) => e.type === 'audit' && /retire/.test(e.reason)), 'the call is audited');

  const again = await cli(['retire'], { cwd: ROOT, env: { CUTOVER_ADMIN_URL: daemon.adminUrl() } });
  assert.equal(again.code, 1);
  assert.match(again.stderr, /no warm standby to retire/);
});

/**
 * Schema-aware rollback and deploy, and `cutover retire`, on the real PostgreSQL (issue 17): with
 * examples/migrations-shop, v4's contract migration drops `products.name` once v3 is retired
 * (`cutover retire`). From then on a rollback to v3 and a deploy of v1 are refused with the reason,
 * status and `cutover status` say the rollback target can no longer serve the schema, and
 * `--force` overrides (recorded).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { isCutoverError } from '../src/lib/errors.ts';
import { ROOT, TEST_TOKEN, cli, freePorts, getJson, instancesOf, killAll, tempDir } from './helpers.ts';
import { available, columnsOf, createTestDb, migrationsConfig, type TestDb } from './migrations-db.ts';

const SHOP = path.join(ROOT, 'examples', 'migrations-shop');
const release = (v: string) => path.join(SHOP, v);

const skip = await available('postgres');
let daemon: Daemon;
let client: AdminClient;
let db: TestDb;
let stateDir: string;
let cleanup: () => void;
let env: NodeJS.ProcessEnv;

interface RollbackTarget { color: string; version: string; state: string; canServe: boolean; problems: string[] }
const rollbackTarget = () => (daemon.controller.status() as unknown as { migrations: { rollbackTarget: RollbackTarget | null } }).migrations.rollbackTarget;
const liveRelease = async () => (await getJson<{ release: string }>(`${daemon.liveUrl()}/`)).release;

before(async () => {
  if (skip) return;
  db = await createTestDb('postgres');
  const t = tempDir();
  cleanup = t.cleanup;
  const config = parseConfig(migrationsConfig(await freePorts(), db.url), { file: 'cutover.yaml', baseDir: t.dir });
  stateDir = config.stateDir;
  daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
  client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN, actor: 'test' });
  env = { CUTOVER_ADMIN_URL: daemon.adminUrl() };
});

after(async () => {
  if (skip) return;
  await client?.close();
  await daemon?.stop({ stopInstances: true });
  killAll(instancesOf(stateDir));
  await db?.drop();
  cleanup?.();
});

test('after `cutover retire` runs the contract, rollback to the retired release and a redeploy of an old one are refused; status says why', { skip: skip ?? false }, async () => {
  let v4 = '';
  for (const v of ['v1', 'v2', 'v3', 'v4']) {
    const d = await daemon.controller.deploy({ version: v, path: release(v), actor: 'test' }).done;
    assert.equal(d.status, 'succeeded', `${v}: ${JSON.stringify(d.error)}`);
    v4 = d.id;
  }
  // Only a contract was pending for v4: the compatibility run still ran, and checked v4 again after
  // applying its contract to the shadow copy (v4 must work before and after it).
  const [compat] = daemon.controller.deployment(v4).events.filter((e) => e.type === 'migrations.compat');
  assert.equal((compat?.data as { outcome: string }).outcome, 'passed', compat?.reason);
  const runs = (compat.data as { versions: { label: string; version: string; afterContract?: boolean; checks: { check: string }[] }[] }).versions;
  assert.deepEqual(runs.map((r) => `${r.label} ${r.version}${r.afterContract ? ' after contract' : ''}`), ['old v3', 'new v4', 'new v4 after contract']);
  assert.match(compat.reason, /the new release also passes after its contract migration\(s\) 004_drop_name\.contract\.sql/);
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'name', 'title'], 'the contract ran on the shadow only');
  assert.equal(rollbackTarget()?.canServe, true, 'v3 (warm) still has the column it uses');

  const retired = await cli(['retire', '--reason', 'done with v3'], { cwd: ROOT, env });
  assert.equal(retired.code, 0, retired.stderr);
  assert.match(retired.stdout, /^retired (blue|green) \(v3\); a rollback now restarts it; no contract migration pending/);
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'title'], 'the retire ran the held contract');
  const again = await cli(['retire'], { cwd: ROOT, env });
  assert.equal(again.code, 1);
  assert.match(again.stderr, /no warm standby to retire .*v3 is retired already/);

  const rt = rollbackTarget();
  assert.equal(rt?.version, 'v3');
  assert.equal(rt?.state, 'retired');
  assert.equal(rt?.canServe, false);
  assert.match(rt?.problems[0] ?? '', /v3 lacks the applied contract migration\(s\) 004_drop_name\.contract\.sql/);
  const status = await cli(['status'], { cwd: ROOT, env });
  assert.match(status.stdout, /✗ the rollback target v3 \((blue|green), retired\) can no longer serve the schema: v3 lacks the applied contract migration\(s\) 004_drop_name\.contract\.sql/);

  // Rollback: refused (exit 1), nothing moves.
  const refused = await cli(['rollback'], { cwd: ROOT, env });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /rollback to v3 refused: v3 lacks the applied contract migration\(s\) 004_drop_name\.contract\.sql.*--force/);
  assert.equal(await liveRelease(), 'v4');

  // Deploy of v1 (the tracking table knows the database is ahead of it): refused before anything starts.
  const before = daemon.controller.history().length;
  await assert.rejects(client.call('POST', '/deployments', { version: 'v1', path: release('v1') }), (err: unknown) => {
    assert.ok(isCutoverError(err, 'CUTOVER_ERR_SCHEMA_MISMATCH'), String(err));
    assert.match((err as Error).message, /deploy v1 refused: v1 lacks the applied contract migration\(s\) 004_drop_name\.contract\.sql/);
    return true;
  });
  const cliDeploy = await cli(['deploy', 'v1', '--path', release('v1')], { cwd: ROOT, env });
  assert.equal(cliDeploy.code, 1);
  assert.match(cliDeploy.stderr, /deploy v1 refused/);
  assert.equal(daemon.controller.history().length, before, 'no deployment was started');
  assert.equal(await liveRelease(), 'v4');
});

test('--force overrides a refused rollback and a refused deploy, and both are recorded', { skip: skip ?? false }, async () => {
  const forced = await cli(['rollback', '--force'], { cwd: ROOT, env, timeoutMs: 60_000 });
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /rolled back: v3 is live/);
  const overridden = daemon.controller.events({ limit: 10_000 }).filter((e) => e.type === 'schema.overridden');
  assert.equal(overridden.length, 1);
  assert.match(overridden[0].reason, /rolled back to v3 with --force although v3 lacks the applied contract migration/);
  assert.equal((overridden[0].data as { action: string }).action, 'rollback');
  // Back to v4: it carries the contract, so nothing to refuse.
  const back = await daemon.controller.rollback({ actor: 'test' });
  assert.equal(back.live.version, 'v4');

  const d = await daemon.controller.deploy({ version: 'v3', path: release('v3'), force: true, actor: 'test' }).done;
  assert.equal(d.status, 'succeeded', JSON.stringify(d.error));
  assert.equal(d.schemaForced, true);
  const events = daemon.controller.deployment(d.id).events;
  assert.ok(events.some((e) => e.type === 'schema.overridden' && (e.data as { action: string }).action === 'deploy'));
  const migrate = events.find((e) => e.type === 'phase' && e.phase === 'migrate');
  assert.match(migrate?.reason ?? '', /the database is ahead of it by 004_drop_name\.contract\.sql \(forced\)/);
  assert.ok(events.some((e) => e.type === 'migrations.schema.overridden'));
});

test('the migrate phase checks the tracking table itself: a contract applied outside Cutover still stops a release that lacks it', { skip: skip ?? false }, async () => {
  // Someone ran a contract by hand: the daemon's cached view does not know it yet.
  await db.db.query("INSERT INTO cutover_migrations (name, phase, checksum, status, release, recorded_at, applied_at, actor) VALUES ('009_manual.contract.sql', 'contract', repeat('0', 64), 'applied', 'by-hand', now(), now(), 'dba')");
  try {
    const d = await daemon.controller.deploy({ version: 'v4', path: release('v4'), actor: 'test' }).done;
    assert.equal(d.status, 'failed');
    assert.equal(d.error?.code, 'CUTOVER_ERR_MIGRATION');
    assert.match(d.error?.message ?? '', /v4 lacks the contract migration\(s\) 009_manual\.contract\.sql the database has applied.*--force/);
    assert.equal(await liveRelease(), 'v3', 'traffic untouched');
  } finally {
    await db.db.query("DELETE FROM cutover_migrations WHERE name = '009_manual.contract.sql'");
  }
});

/**
 * Migrations in the deployment pipeline, on the real PostgreSQL, with the example under
 * examples/migrations-shop: v1 creates `products(name)`; v2 adds `title` and writes both; v3
 * backfills and reads `title`; v4 writes only `title` and drops `name` in a contract migration.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { request } from 'undici';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { isCutoverError } from '../src/lib/errors.ts';
import type { EventRecord } from '../src/store/types.ts';
import { ROOT, TEST_TOKEN, cli, freePorts, getJson, instancesOf, killAll, tempDir } from './helpers.ts';
import { available, columnsOf, createTestDb, databasesLike, migrationsConfig, type TestDb } from './migrations-db.ts';

const SHOP = path.join(ROOT, 'examples', 'migrations-shop');
const release = (v: string) => path.join(SHOP, v);

const skip = await available('postgres');
let daemon: Daemon;
let client: AdminClient;
let db: TestDb;
let stateDir: string;
let cleanup: () => void;

async function deploy(version: string, dir: string) {
  return daemon.controller.deploy({ version, path: dir, actor: 'test' }).done;
}

function eventsOf(deployment: string, type: string): EventRecord[] {
  return daemon.controller.deployment(deployment).events.filter((e) => e.type === type);
}

async function post(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url, { method: 'POST' });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

before(async () => {
  if (skip) return;
  db = await createTestDb('postgres');
  const t = tempDir();
  cleanup = t.cleanup;
  const config = parseConfig(migrationsConfig(await freePorts(), db.url), { file: 'cutover.yaml', baseDir: t.dir });
  stateDir = config.stateDir;
  daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
  client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN, actor: 'test' });
});

after(async () => {
  if (skip) return;
  await client?.close();
  await daemon?.stop({ stopInstances: true });
  killAll(instancesOf(stateDir));
  await db?.drop();
  cleanup?.();
});

test('a release adding a nullable column passes; the old version keeps serving from the migrated schema; rollback after the switch still works', { skip: skip ?? false }, async (t) => {
  const d1 = await deploy('v1', release('v1'));
  assert.equal(d1.status, 'succeeded', JSON.stringify(d1.error));
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'name']);

  const d2 = await deploy('v2', release('v2'));
  assert.equal(d2.status, 'succeeded', JSON.stringify(d2.error));
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'name', 'title']);
  t.diagnostic(eventsOf(d2.id, 'phase').find((e) => e.phase === 'migrate')?.reason ?? '');
  // The compatibility run started v1 (the rollback target) and v2 on a shadow copy first.
  const [compat] = eventsOf(d2.id, 'migrations.compat');
  assert.equal((compat.data as { outcome: string }).outcome, 'passed', compat.reason);
  const versions = (compat.data as { versions: { label: string; version: string; checks: { check: string; outcome: string }[] }[] }).versions;
  assert.deepEqual(versions.map((v) => `${v.label} ${v.version}`), ['old v1', 'new v2']);
  for (const v of versions) assert.deepEqual(v.checks.map((c) => `${c.check} ${c.outcome}`), ['GET / passed', 'GET /health passed']);
  assert.deepEqual(await databasesLike('postgres', `${db.name}_cshadow_`), [], 'the shadow database was dropped');
  const applied = await db.db.query<{ name: string; status: string; release: string }>('SELECT name, status, release FROM cutover_migrations ORDER BY name');
  assert.deepEqual(applied, [
    { name: '001_create_products.expand.sql', status: 'applied', release: 'v1' },
    { name: '002_add_title.expand.sql', status: 'applied', release: 'v2' },
  ]);

  // v1 is the warm standby; the preview listener serves it. It works on the migrated schema.
  const previewUrl = daemon.previewUrl() as string;
  const old = await getJson<{ release: string; products: unknown[] }>(`${previewUrl}/`);
  assert.equal(old.release, 'v1');
  assert.equal(old.products.length, 3);
  assert.equal((await post(`${previewUrl}/products?title=kiwi`)).status, 201, 'v1 still writes');
  assert.equal((await post(`${daemon.liveUrl()}/products?title=fig`)).status, 201, 'v2 writes both columns');

  const rb = await daemon.controller.rollback({ actor: 'test', reason: 'rollback test' });
  assert.equal(rb.live.version, 'v1');
  assert.equal(rb.restarted, false);
  const after = await getJson<{ release: string; products: { name: string }[] }>(`${daemon.liveUrl()}/`);
  assert.equal(after.release, 'v1');
  assert.deepEqual(after.products.map((p) => p.name), ['apple', 'pear', 'plum', 'kiwi', 'fig'], 'v1 reads what v2 wrote');
});

test('the example across three releases: the contract migration is refused while the standby runs the old release, and applied after it is retired', { skip: skip ?? false }, async () => {
  // Roll forward again (nothing pending), then step 2 (backfill, move reads) and step 3 (contract).
  const again = await deploy('v2', release('v2'));
  assert.equal(again.status, 'succeeded', JSON.stringify(again.error));
  // Through the CLI: `cutover deploy` prints each migrations step under the migrate phase.
  const d3 = await cli(['deploy', 'v3', '--path', release('v3')], { cwd: ROOT, env: { CUTOVER_ADMIN_URL: daemon.adminUrl() }, timeoutMs: 90_000 });
  assert.equal(d3.code, 0, d3.stdout + d3.stderr);
  const migrateSteps = d3.stdout.split('\n').filter((l) => /^ {6}\S/.test(l)).map((l) => l.trim());
  assert.match(migrateSteps.join('\n'), /^✓ linted 1 pending migration\(s\): 0 error\(s\)/m, d3.stdout);
  assert.match(migrateSteps.join('\n'), /^• shadow database \S+_cshadow_[0-9a-f]{8}/m, d3.stdout);
  assert.match(migrateSteps.join('\n'), /^✓ compatibility run passed: .* \([\d.]+m?s\)$/m, d3.stdout);
  assert.match(migrateSteps.join('\n'), /^✓ applied 003_backfill_title\.expand\.sql \(/m, d3.stdout);
  const lines = d3.stdout.split('\n');
  assert.ok(lines.findIndex((l) => /applied 003_backfill_title/.test(l)) < lines.findIndex((l) => /✓ migrate /.test(l)), 'the steps come before the phase line that sums them up');
  const v3 = await getJson<{ release: string; products: { title: string }[] }>(`${daemon.liveUrl()}/`);
  assert.deepEqual(v3.products.map((p) => p.title), ['apple', 'pear', 'plum', 'kiwi', 'fig'], 'the backfill filled title for rows v1 wrote');

  const d4 = await deploy('v4', release('v4'));
  assert.equal(d4.status, 'succeeded', JSON.stringify(d4.error));
  assert.equal(eventsOf(d4.id, 'migrations.held').length, 1);
  const status = await client.call<{ migrations: { pending: string[] }; standby: { color: 'blue' | 'green'; version: string } }>('GET', '/status');
  assert.deepEqual(status.migrations.pending, ['004_drop_name.contract.sql']);
  assert.equal(status.standby.version, 'v3');

  // Refused: the standby (v3, a rollback target) still writes `name`.
  await assert.rejects(client.call('POST', '/migrations/contract'), (err: unknown) => {
    assert.ok(isCutoverError(err, 'CUTOVER_ERR_INVALID_STATE'), String(err));
    assert.match((err as Error).message, /004_drop_name\.contract\.sql is held: .*runs v3, which does not have/);
    return true;
  });
  assert.ok((await columnsOf(db.db, 'products')).includes('name'), 'the column is still there');
  const listing = await client.call<{ pending: { name: string; blockedBy: string[] }[] }>('GET', '/migrations');
  assert.equal(listing.pending[0].blockedBy.length, 1);
  // The same through the CLI: `status` names it, `migrate status` says what holds it, `migrate contract` is refused (exit 1).
  const env = { CUTOVER_ADMIN_URL: daemon.adminUrl() };
  const cliStatus = await cli(['status'], { cwd: ROOT, env });
  assert.match(cliStatus.stdout, /pending contract migrations: 004_drop_name\.contract\.sql/);
  const cliMigrate = await cli(['migrate', 'status'], { cwd: ROOT, env });
  assert.equal(cliMigrate.code, 0, cliMigrate.stderr);
  assert.match(cliMigrate.stdout, /003_backfill_title\.expand\.sql +expand +v3/);
  assert.match(cliMigrate.stdout, /✗ 004_drop_name\.contract\.sql \(from v4, held .*\): (blue|green) \(standby, a rollback target\) runs v3/);
  const refused = await cli(['migrate', 'contract'], { cwd: ROOT, env });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /004_drop_name\.contract\.sql is held/);

  // Retiring v3 makes it eligible: the `retired` seam applies it.
  await daemon.controller.retire(status.standby.color, 'test', 'contract test');
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'title']);
  const st = daemon.controller.status();
  assert.deepEqual(st.migrations?.pending, []);
  const contract = daemon.controller.events({ limit: 10_000 }).filter((e) => e.type === 'migrations.contract');
  assert.equal(contract.length, 1);
  assert.match(contract[0].reason, /applied contract migration 004_drop_name\.contract\.sql/);
  const live = await getJson<{ release: string; products: unknown[] }>(`${daemon.liveUrl()}/`);
  assert.equal(live.release, 'v4');
  assert.equal((await post(`${daemon.liveUrl()}/products?title=lime`)).status, 201);
  const rows = await db.db.query<{ name: string; status: string }>('SELECT name, status FROM cutover_migrations ORDER BY name');
  assert.ok(rows.every((r) => r.status === 'applied'), JSON.stringify(rows));
  assert.equal(rows.length, 4);
});

/**
 * The lint gate and the two-version compatibility run in the pipeline, on the real PostgreSQL:
 * an expand file that renames a column is stopped by the linter; with the linter overridden
 * (`database.lint: warn`, recorded) the compatibility run catches it, because the old release
 * fails against the migrated shadow copy; the real database never changes. An abort during the
 * run drops the shadow database too.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import type { EventRecord } from '../src/store/types.ts';
import { FIXTURES, ROOT, TEST_TOKEN, freePorts, getJson, instancesOf, killAll, tempDir, waitFor, type Ports } from './helpers.ts';
import { available, columnsOf, createTestDb, databasesLike, migrationsConfig, type TestDb } from './migrations-db.ts';

const V1 = path.join(ROOT, 'examples', 'migrations-shop', 'v1');
const RENAME = path.join(FIXTURES, 'migrations-rename');
const SLOW = path.join(FIXTURES, 'migrations-slow');

const skip = await available('postgres');
let daemon: Daemon;
let db: TestDb;
let dir: string;
let ports: Ports;
let stateDir: string;
let cleanup: () => void;

async function startDaemon(database = '', topLevel = ''): Promise<Daemon> {
  const config = parseConfig(migrationsConfig(ports, db.url, database, topLevel), { file: 'cutover.yaml', baseDir: dir });
  stateDir = config.stateDir;
  return Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
}

function eventsOf(deployment: string, type: string): EventRecord[] {
  return daemon.controller.deployment(deployment).events.filter((e) => e.type === type);
}

async function assertUntouched(): Promise<void> {
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'name'], 'the real schema is unchanged');
  const tracked = await db.db.query<{ name: string }>('SELECT name FROM cutover_migrations ORDER BY name');
  assert.deepEqual(tracked.map((r) => r.name), ['001_create_products.expand.sql']);
  assert.deepEqual(await databasesLike('postgres', `${db.name}_cshadow_`), [], 'no shadow database is left');
  const live = await getJson<{ release: string; products: unknown[] }>(`${daemon.liveUrl()}/`);
  assert.equal(live.release, 'v1', 'traffic untouched');
  assert.equal(live.products.length, 3);
  const envs = daemon.controller.status().environments;
  assert.ok(Object.values(envs).every((e) => e.role !== 'candidate' && (e.role === 'live' || e.instances.length === 0)), 'the candidate was stopped');
}

before(async () => {
  if (skip) return;
  db = await createTestDb('postgres');
  const t = tempDir();
  dir = t.dir;
  cleanup = t.cleanup;
  ports = await freePorts();
  daemon = await startDaemon();
});

after(async () => {
  if (skip) return;
  await daemon?.stop({ stopInstances: true });
  killAll(instancesOf(stateDir));
  await db?.drop();
  cleanup?.();
});

test('an expand file that renames a column is stopped by the linter, with file:line, rule and fix; nothing changes', { skip: skip ?? false }, async (t) => {
  const d1 = await daemon.controller.deploy({ version: 'v1', path: V1, actor: 'test' }).done;
  assert.equal(d1.status, 'succeeded', JSON.stringify(d1.error));

  const bad = await daemon.controller.deploy({ version: 'rename', path: RENAME, actor: 'test' }).done;
  assert.equal(bad.status, 'failed');
  t.diagnostic(bad.error?.message ?? '');
  assert.equal(bad.error?.code, 'CUTOVER_ERR_MIGRATION');
  assert.match(bad.error?.message ?? '', /migrations\/002_rename_name\.expand\.sql:2: error rename-column renames column products\.name to title → Add the new column \(expand\)/);
  assert.match(bad.error?.message ?? '', /database\.lint: warn/);
  assert.equal(eventsOf(bad.id, 'migrations.compat').length, 0, 'the linter stopped it before the compatibility run');
  await assertUntouched();
});

test('with the linter overridden (database.lint: warn, recorded), the compatibility run catches it: the old release fails on the migrated copy, the real database is unchanged', { skip: skip ?? false }, async (t) => {
  // The override is a config change: restart the daemon with it; it adopts v1 and keeps serving.
  // An http gate is configured too: the compatibility run runs it against both versions.
  await daemon.stop({ stopInstances: false });
  daemon = await startDaemon('  lint: warn\n', 'gates:\n  - name: lists-products\n    http:\n      path: /\n      expect:\n        status: 200\n        bodyContains: products\n');
  await waitFor(async () => (await getJson<{ release: string }>(`${daemon.liveUrl()}/`).catch(() => ({ release: '' }))).release === 'v1', { what: 'v1 adopted' });

  const bad = await daemon.controller.deploy({ version: 'rename', path: RENAME, actor: 'test' }).done;
  assert.equal(bad.status, 'failed');
  t.diagnostic(bad.error?.message ?? '');
  const [override] = eventsOf(bad.id, 'migrations.lint.overridden');
  assert.ok(override, 'the override is recorded');
  assert.match(override.reason, /rename-column/);

  const [compat] = eventsOf(bad.id, 'migrations.compat');
  const failure = (compat.data as { failure: { label: string; version: string; check: string; reason: string; statements: string[] } }).failure;
  assert.equal(failure.label, 'old');
  assert.equal(failure.version, 'v1');
  assert.equal(failure.check, 'lists-products');
  assert.match(failure.reason, /^lists-products: GET \/ → 500 .*status 500 \(expected 200\).*column [\\"]+name[\\"]+ does not exist/);
  assert.deepEqual(failure.statements, ['002_rename_name.expand.sql:2 ALTER TABLE products RENAME COLUMN name TO title']);
  assert.match(bad.error?.message ?? '', /the old release v1 \(the rollback target\) fails lists-products against the migrated copy of the database.*002_rename_name\.expand\.sql:2 ALTER TABLE products RENAME COLUMN name TO title.*the real database is untouched/);
  await assertUntouched();
});

test('an abort during the compatibility run stops it and drops the shadow database', { skip: skip ?? false }, async () => {
  const run = daemon.controller.deploy({ version: 'slow', path: SLOW, actor: 'test' });
  // The shadow exists once this progress event is recorded; the new release then takes 20 s to start on it.
  await waitFor(() => daemon.controller.deployment(run.deployment.id).events.some((e) => e.type === 'migrations.compat.progress' && e.reason.startsWith('applied')), { timeoutMs: 30_000, what: 'migrations applied to the shadow' });
  // One copy per release on PostgreSQL (old and new): one or both may exist by now.
  assert.ok((await databasesLike('postgres', `${db.name}_cshadow_`)).length >= 1, 'the shadow exists during the run');
  daemon.controller.abort({ actor: 'test', reason: 'abort test' });
  const d = await run.done;
  assert.equal(d.status, 'aborted');
  await assertUntouched();
});

/**
 * Watching the rollback target after a migration, on the real PostgreSQL (issue 17): with the
 * linter overridden and the compatibility run off, an expand migration that renames a column the
 * old release reads goes through; once the deployment is stable the read-only part of the
 * recorded traffic is replayed against the standby (v1) through the preview listener, and
 * status, `cutover status`, the dashboard and an event say that the standby can no longer serve
 * the schema.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { FIXTURES, ROOT, TEST_TOKEN, cli, freePorts, getJson, instancesOf, killAll, tempDir, waitFor } from './helpers.ts';
import { available, columnsOf, createTestDb, migrationsConfig, type TestDb } from './migrations-db.ts';

const V1 = path.join(ROOT, 'examples', 'migrations-shop', 'v1');
const RENAME = path.join(FIXTURES, 'migrations-rename');

const skip = await available('postgres');
let daemon: Daemon;
let db: TestDb;
let stateDir: string;
let cleanup: () => void;

interface RollbackTarget { color: string; version: string; state: string; canServe: boolean; problems: string[]; lastCheck: { outcome: string; checked: number } | null }
const rollbackTarget = () => (daemon.controller.status() as unknown as { migrations: { rollbackTarget: RollbackTarget | null } }).migrations.rollbackTarget;

before(async () => {
  if (skip) return;
  db = await createTestDb('postgres');
  const t = tempDir();
  cleanup = t.cleanup;
  const config = parseConfig(migrationsConfig(await freePorts(), db.url, '  lint: warn\n  compatibility:\n    enabled: false\n'), { file: 'cutover.yaml', baseDir: t.dir });
  stateDir = config.stateDir;
  daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
});

after(async () => {
  if (skip) return;
  await daemon?.stop({ stopInstances: true });
  killAll(instancesOf(stateDir));
  await db?.drop();
  cleanup?.();
});

test('the standby broken by an expand migration shows in status, found by replaying recorded reads through the preview listener', { skip: skip ?? false }, async (t) => {
  const d1 = await daemon.controller.deploy({ version: 'v1', path: V1, actor: 'test' }).done;
  assert.equal(d1.status, 'succeeded', JSON.stringify(d1.error));
  assert.equal((await getJson<{ release: string }>(`${daemon.liveUrl()}/`)).release, 'v1');

  const d2 = await daemon.controller.deploy({ version: 'rename', path: RENAME, actor: 'test' }).done;
  assert.equal(d2.status, 'succeeded', JSON.stringify(d2.error));
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'title'], 'the unsafe rename was applied (linter overridden, no compatibility run)');

  await waitFor(() => rollbackTarget()?.lastCheck !== null && rollbackTarget()?.lastCheck !== undefined, { timeoutMs: 20_000, what: 'the standby watch' });
  const rt = rollbackTarget() as RollbackTarget;
  t.diagnostic(rt.problems.join('\n'));
  assert.equal(rt.version, 'v1');
  assert.equal(rt.state, 'warm');
  assert.equal(rt.canServe, false);
  assert.equal(rt.lastCheck?.outcome, 'failed');
  assert.match(rt.problems[0], /^the standby (blue|green) \(v1\) fails 1 of 1 recorded read-only request\(s\) after expand migration\(s\) 002_rename_name\.expand\.sql of rename: GET \/ \(live answered 200\) → 500: .*column [\\"]+name[\\"]+ does not exist/);
  const broken = daemon.controller.events({ limit: 10_000 }).filter((e) => e.type === 'migrations.standby.broken');
  assert.equal(broken.length, 1);
  assert.equal(broken[0].version, 'v1');

  const status = await cli(['status'], { cwd: ROOT, env: { CUTOVER_ADMIN_URL: daemon.adminUrl() } });
  assert.match(status.stdout, /✗ the rollback target v1 \((blue|green), warm\) can no longer serve the schema: the standby .* fails 1 of 1 recorded read-only request/);
  const json = JSON.parse((await cli(['status', '--json'], { cwd: ROOT, env: { CUTOVER_ADMIN_URL: daemon.adminUrl() } })).stdout) as { migrations: { rollbackTarget: RollbackTarget } };
  assert.equal(json.migrations.rollbackTarget.canServe, false);
});

const CHROMIUM = '/usr/bin/chromium';

test('the dashboard marks the rollback target that can no longer serve the schema', { skip: skip ?? (!existsSync(CHROMIUM) && 'chromium is not installed') }, async () => {
  const rt = rollbackTarget() as RollbackTarget;
  assert.equal(rt.canServe, false, 'set by the test before');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(daemon.adminUrl());
    await page.getByLabel('Token', { exact: true }).fill(TEST_TOKEN);
    await page.keyboard.press('Enter');
    const warning = page.getByTestId(`schema-warning-${rt.color}`);
    await warning.waitFor();
    assert.match(await warning.textContent() ?? '', /can no longer serve the schema: the standby .* \(v1\) fails 1 of 1 recorded read-only request/);
    assert.match(await page.locator('#btn-rollback').getAttribute('title') ?? '', /can no longer serve the schema/);
  } finally {
    await browser.close();
  }
});

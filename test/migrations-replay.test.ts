/**
 * Recorded traffic replayed on the shadow database, on the real PostgreSQL (issue 17): live
 * requests to v1 (writes included) are sampled by the router, redacted, and replayed by the
 * compatibility run against the old and the new release on the shadow copy. Two runtime-only
 * breaks that lint clean (suppressed) and pass the named checks are caught by the replay with no
 * gate written for them: a CHECK … NOT VALID that rejects v1's writes, and a BEFORE INSERT
 * trigger v1 cannot satisfy. A passing run writes no row to the real database, also with
 * `compatibility.requests`; the sample on disk holds no secret in clear. The router runs as its
 * own process (the default of `cutover up`): it copies the chosen requests and relays them.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import type { EventRecord } from '../src/store/types.ts';
import { FIXTURES, ROOT, TEST_TOKEN, cli, freePorts, getJson, instancesOf, killAll, routersOf, tempDir, waitFor, type Ports } from './helpers.ts';
import { available, columnsOf, createTestDb, databasesLike, migrationsConfig, type TestDb } from './migrations-db.ts';

const SHOP = path.join(ROOT, 'examples', 'migrations-shop');
const CHECK = path.join(FIXTURES, 'migrations-check');
const TRIGGER = path.join(FIXTURES, 'migrations-trigger');
const SEQUENCE = path.join(FIXTURES, 'migrations-sequence');
/** Longer than the sample's 10 ms between copies. */
const SAMPLE_GAP_MS = 30;
const SECRETS = ['Bearer live-secret-token', 'sess-4711', 'qs-secret-99', 'hunter2'];

const skip = await available('postgres');
let daemon: Daemon;
let db: TestDb;
let dir: string;
let ports: Ports;
let stateDir: string;
let cleanup: () => void;

async function startDaemon(database = ''): Promise<Daemon> {
  const config = parseConfig(migrationsConfig(ports, db.url, database), { file: 'cutover.yaml', baseDir: dir });
  stateDir = config.stateDir;
  // The router in its own process, as `cutover up` runs it: the capture crosses the control socket.
  return Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins(), dataPlane: 'process' });
}

function eventsOf(deployment: string, type: string): EventRecord[] {
  return daemon.controller.deployment(deployment).events.filter((e) => e.type === type);
}

async function live(method: string, p: string, o: { headers?: Record<string, string>; body?: string } = {}): Promise<number> {
  const res = await request(`${daemon.liveUrl()}${p}`, { method: method as 'GET', headers: o.headers, body: o.body });
  await res.body.dump();
  // The sample copies at most one request per 10 ms: space the test's requests out so each is kept.
  await sleep(SAMPLE_GAP_MS);
  return res.statusCode;
}

async function productCount(): Promise<number> {
  const [r] = await db.db.query<{ n: string }>('SELECT count(*) AS n FROM products');
  return Number(r.n);
}

type Failure = { label: string; version: string; check: string; reason: string; statements: string[] };

before(async () => {
  if (skip) return;
  db = await createTestDb('postgres');
  const t = tempDir();
  dir = t.dir;
  cleanup = t.cleanup;
  ports = await freePorts();
  daemon = await startDaemon();
  const d1 = await daemon.controller.deploy({ version: 'v1', path: path.join(SHOP, 'v1'), actor: 'test' }).done;
  assert.equal(d1.status, 'succeeded', JSON.stringify(d1.error));
  // Live traffic v1 serves: reads, and writes with a JSON body (one with an empty title, which v1 stores).
  assert.equal(await live('GET', '/'), 200);
  assert.equal(await live('POST', '/products', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title: 'melon' }) }), 201);
  assert.equal(await live('POST', '/products', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title: '' }) }), 201);
  // Secrets in a header, a cookie, the query and a body field: the sample must never keep them.
  assert.equal(await live('GET', '/?token=qs-secret-99', { headers: { authorization: SECRETS[0], cookie: `sid=${SECRETS[1]}; theme=dark` } }), 200);
  assert.equal(await live('POST', '/products', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title: 'kiwi', password: 'hunter2' }) }), 201);
  await waitFor(() => (daemon.controller.status() as { migrations?: { sampledRequests: number } }).migrations?.sampledRequests === 5, { what: 'five requests sampled' });
});

after(async () => {
  if (skip) return;
  await daemon?.stop({ stopInstances: true });
  killAll(instancesOf(stateDir));
  killAll(routersOf(stateDir));
  await db?.drop();
  cleanup?.();
});

async function assertRealDbUntouched(rows: number): Promise<void> {
  assert.equal(await productCount(), rows, 'no row was written to the real database');
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'name'], 'the real schema is unchanged');
  const constraints = await db.db.query<{ n: string }>("SELECT conname AS n FROM pg_constraint WHERE conrelid = 'products'::regclass AND contype = 'c'");
  assert.deepEqual(constraints, []);
  const tracked = await db.db.query<{ name: string }>('SELECT name FROM cutover_migrations ORDER BY name');
  assert.deepEqual(tracked.map((r) => r.name), ['001_create_products.expand.sql']);
  assert.deepEqual(await databasesLike('postgres', `${db.name}_cshadow_`), [], 'no shadow database is left');
}

test('a CHECK … NOT VALID that rejects the old release\'s writes is caught by replaying its recorded POST; nothing changes', { skip: skip ?? false }, async (t) => {
  const rows = await productCount();
  // Through the CLI: `deploy` prints the lint result with the suppression and its reason.
  const out = await cli(['deploy', 'check', '--path', CHECK], { cwd: ROOT, env: { CUTOVER_ADMIN_URL: daemon.adminUrl(), CUTOVER_PLAIN: '1' }, timeoutMs: 120_000 });
  assert.equal(out.code, 1, out.stderr);
  t.diagnostic(out.stdout);
  assert.match(out.stdout, /linted 1 pending migration\(s\): 0 error\(s\), 0 warning\(s\), 1 suppressed/);
  assert.match(out.stdout, /suppressed migrations\/002_name_not_empty\.expand\.sql:4 constraint-rejects-old-writes .*\(allowed: we believe no release writes an empty name\)/);
  assert.match(out.stdout, /compatibility run failed: the old release v1/);
  const bad = daemon.controller.history({ limit: 1 })[0];
  assert.equal(bad.version, 'check');
  assert.equal(bad.status, 'failed');
  const [compat] = eventsOf(bad.id, 'migrations.compat');
  const failure = (compat.data as { failure: Failure }).failure;
  assert.equal(failure.label, 'old');
  assert.equal(failure.version, 'v1');
  assert.equal(failure.check, 'replay POST /products');
  assert.match(failure.reason, /^POST \/products \(live answered 201\) → 500: .*violates check constraint .*products_name_not_empty/);
  assert.deepEqual(failure.statements, ['002_name_not_empty.expand.sql:4 ALTER TABLE products ADD CONSTRAINT products_name_not_empty CHECK (name <> \'\') NOT VALID'], 'the suppressed finding names the statement');
  // The named checks (GET /, the health path) passed before the replay found it.
  const old = (compat.data as { versions: { label: string; checks: { check: string; outcome: string }[] }[] }).versions.find((v) => v.label === 'old');
  assert.deepEqual(old?.checks.slice(0, 2).map((c) => `${c.check} ${c.outcome}`), ['GET / passed', 'GET /health passed']);
  assert.match(bad.error?.message ?? '', /the old release v1 \(the rollback target\) fails replay POST \/products against the migrated copy/);
  await assertRealDbUntouched(rows);
});

test('a BEFORE INSERT trigger the old release cannot satisfy is caught by the replay; nothing changes', { skip: skip ?? false }, async (t) => {
  const rows = await productCount();
  const bad = await daemon.controller.deploy({ version: 'trigger', path: TRIGGER, actor: 'test' }).done;
  assert.equal(bad.status, 'failed');
  t.diagnostic(bad.error?.message ?? '');
  const failure = (eventsOf(bad.id, 'migrations.compat')[0].data as { failure: Failure }).failure;
  assert.equal(failure.label, 'old');
  assert.equal(failure.check, 'replay POST /products');
  assert.match(failure.reason, /→ 500: .*products\.sku is required/);
  // The file sets no lock timeout; the pipeline's sessions have database.lockTimeout, so the linter does not ask for one.
  const findings = (eventsOf(bad.id, 'migrations.lint')[0].data as { findings: { rule: string }[] }).findings;
  assert.deepEqual(findings.map((f) => f.rule), ['create-trigger']);
  const standalone = await cli(['lint-migrations', path.join(TRIGGER, 'migrations', '002_require_sku.expand.sql')], { cwd: ROOT });
  assert.match(standalone.stdout, /warning missing-lock-timeout/, 'the standalone linter cannot know the runner sets one');
  await assertRealDbUntouched(rows);
});

test('when the linter flags nothing, the suspects are the statements that change the schema, never a SET', { skip: skip ?? false }, async () => {
  const rows = await productCount();
  const bad = await daemon.controller.deploy({ version: 'sequence', path: SEQUENCE, actor: 'test' }).done;
  assert.equal(bad.status, 'failed');
  const failure = (eventsOf(bad.id, 'migrations.compat')[0].data as { failure: Failure }).failure;
  assert.equal(failure.check, 'replay POST /products');
  assert.match(failure.reason, /→ 500: .*duplicate key/);
  assert.deepEqual(failure.statements, ['002_restart_ids.expand.sql:2 ALTER SEQUENCE products_id_seq RESTART WITH 1']);
  assert.equal(await productCount(), rows);
});

test('a passing run replays the writes and compatibility.requests on the shadow only: no row reaches the real database; the sample on disk is redacted (0600)', { skip: skip ?? false }, async () => {
  // The config change needs a restart; v1 is adopted and keeps serving, the sample is reloaded from disk.
  await daemon.stop({ stopInstances: false });
  const file = path.join(stateDir, 'traffic-sample.json');
  const onDisk = readFileSync(file, 'utf8');
  for (const s of SECRETS) assert.ok(!onDisk.includes(s), `the sample file holds ${s} in clear`);
  assert.ok(onDisk.includes('[redacted]'));
  const saved = JSON.parse(onDisk) as { requests: { method: string; path: string; headers: [string, string][]; body: string | null; redacted: string[] }[] };
  const withSecrets = saved.requests.find((r) => r.path.startsWith('/?token='));
  assert.deepEqual(withSecrets?.redacted.sort(), ['cookie:sid', 'cookie:theme', 'header:authorization', 'query:token']);
  assert.ok(!Buffer.from(saved.requests.find((r) => r.redacted.includes('body:password'))?.body ?? '', 'base64').toString().includes('hunter2'));
  assert.equal(statSync(file).mode & 0o777, 0o600);

  daemon = await startDaemon('  compatibility:\n    requests:\n      - method: POST\n        path: /products\n        body: { title: from-config }\n        status: 201\n');
  await waitFor(async () => (await getJson<{ release: string }>(`${daemon.liveUrl()}/`).catch(() => ({ release: '' }))).release === 'v1', { what: 'v1 adopted' });
  // At most one 'from-config' row: the configured POST runs on both versions, and passes on both
  // because each runs on its own copy of the migrated shadow (on one shared copy the second would fail).
  await db.db.query("CREATE UNIQUE INDEX products_from_config_once ON products (name) WHERE name = 'from-config'");
  const rows = await productCount();
  const d2 = await daemon.controller.deploy({ version: 'v2', path: path.join(SHOP, 'v2'), actor: 'test' }).done;
  assert.equal(d2.status, 'succeeded', JSON.stringify(d2.error));
  assert.ok(eventsOf(d2.id, 'migrations.compat.progress').some((e) => /the new release runs on its own copy .*_cshadow_/.test(e.reason)));
  const [compat] = eventsOf(d2.id, 'migrations.compat');
  // Five requests from before the restart (reloaded from disk) and the GET / polls since.
  assert.ok(Number(/replayed (\d+) recorded request\(s\)/.exec(compat.reason)?.[1]) >= 6, compat.reason);
  const versions = (compat.data as { versions: { label: string; checks: { check: string; outcome: string; reason: string }[] }[] }).versions;
  for (const v of versions) {
    const names = v.checks.map((c) => `${c.check} ${c.outcome}`);
    assert.ok(names.includes('request POST /products passed'), names.join(', '));
    assert.equal(v.checks.filter((c) => c.check === 'replay POST /products').length, 3, names.join(', '));
    // The redacted request is still judged on 5xx; its 2xx passes.
    assert.ok(v.checks.every((c) => c.outcome === 'passed'), names.join(', '));
  }
  assert.equal(await productCount(), rows, 'the replayed and configured writes went to the shadow only');
  const named = await db.db.query<{ name: string }>("SELECT name FROM products WHERE name = 'from-config'");
  assert.deepEqual(named, []);
  assert.deepEqual(await columnsOf(db.db, 'products'), ['id', 'name', 'title'], 'the expand migration itself was applied');
  // Once v2 is live, the rollback target v1 is watched: its recorded reads still work on the migrated schema.
  await waitFor(() => daemon.controller.events({ limit: 10_000 }).some((e) => e.type === 'migrations.standby.checked'), { timeoutMs: 20_000, what: 'the standby watch' });
  const checked = daemon.controller.events({ limit: 10_000 }).filter((e) => e.type === 'migrations.standby.checked');
  assert.equal(checked[0].version, 'v1');
  assert.match(checked[0].reason, /answers all \d+ recorded read-only request\(s\) after expand migration\(s\) 002_add_title\.expand\.sql of v2/);
  const rt = (daemon.controller.status() as unknown as { migrations: { rollbackTarget: { version: string; canServe: boolean } } }).migrations.rollbackTarget;
  assert.deepEqual([rt.version, rt.canServe], ['v1', true]);
});

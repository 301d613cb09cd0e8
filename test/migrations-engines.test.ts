/**
 * The migration runner's parts on the real servers: the tracking table, checksums and
 * transactions (PostgreSQL), shadow databases on PostgreSQL and MariaDB (schema, foreign keys,
 * views, generated columns, a sample of rows, sequences), and the compatibility run on MariaDB.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../src/config/load.ts';
import type { PhaseContext } from '../src/plugin-api/hooks.ts';
import { runCompatibility } from '../src/migrations/compat.ts';
import { connect } from '../src/migrations/db.ts';
import { readMigrations } from '../src/migrations/files.ts';
import { Migrator } from '../src/migrations/migrator.ts';
import { createShadow } from '../src/migrations/shadow.ts';
import { Tracking } from '../src/migrations/tracking.ts';
import { silentLogger } from '../src/lib/logger.ts';
import type { EventInput } from '../src/store/types.ts';
import { FIXTURES, tempDir } from './helpers.ts';
import { available, columnsOf, createTestDb, databasesLike, type TestDb } from './migrations-db.ts';

const noPg = await available('postgres');
const noMy = await available('mysql');

/** A Migrator on `db` without the compatibility run, and a release directory to write migration files into. */
function migratorFor(db: TestDb, dir: string): { migrator: Migrator; events: Omit<EventInput, 'actor'>[]; ctx: (version: string) => PhaseContext; file: (name: string, sql: string) => void } {
  const yaml = `environments:\n  process:\n    command: node server.js\ndatabase:\n  url: ${db.url}\n  compatibility:\n    enabled: false\n`;
  const config = parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir });
  const events: Omit<EventInput, 'actor'>[] = [];
  const migrator = new Migrator({ config, environments: () => [], record: (e) => events.push(e), logger: silentLogger });
  mkdirSync(path.join(dir, 'migrations'), { recursive: true });
  return {
    migrator, events,
    file: (name, sql) => writeFileSync(path.join(dir, 'migrations', name), sql),
    ctx: (version) => ({
      deployment: { id: 'd-test', actor: 'test' }, release: { version, path: dir }, color: 'green', previous: null,
      previewUrl: null, liveUrl: 'http://127.0.0.1:1', signal: new AbortController().signal,
      record: (e: Omit<EventInput, 'deployment' | 'actor'>) => events.push(e),
      awaitPromotion: () => Promise.reject(new Error('not used')),
    }) as unknown as PhaseContext,
  };
}

test('PostgreSQL: applied files are recorded with their checksum; an applied file that changed is refused naming both checksums', { skip: noPg ?? false }, async () => {
  const db = await createTestDb('postgres');
  const t = tempDir();
  try {
    const m = migratorFor(db, t.dir);
    m.file('001_users.expand.sql', 'CREATE TABLE users (id bigint PRIMARY KEY, email text);\n');
    const v1 = await m.migrator.migrate(m.ctx('r1'));
    assert.equal(v1.outcome, 'passed', v1.summary);
    const [row] = await db.db.query<{ name: string; checksum: string; status: string; release: string; actor: string }>('SELECT name, checksum, status, release, actor FROM cutover_migrations');
    assert.deepEqual({ ...row, checksum: row.checksum.length }, { name: '001_users.expand.sql', checksum: 64, status: 'applied', release: 'r1', actor: 'test' });

    m.file('001_users.expand.sql', 'CREATE TABLE users (id bigint PRIMARY KEY, email text, name text);\n');
    const v2 = await m.migrator.migrate(m.ctx('r2'));
    assert.equal(v2.outcome, 'failed');
    assert.match(v2.summary, /001_users\.expand\.sql was applied by r1 with checksum [0-9a-f]{12}…, but the file now has [0-9a-f]{12}…: an applied migration must not change/);
    assert.deepEqual(await columnsOf(db.db, 'users'), ['id', 'email']);
  } finally {
    await db.drop();
    t.cleanup();
  }
});

test('PostgreSQL: a failing statement rolls its whole file back and names file:line, the statement and the database error', { skip: noPg ?? false }, async () => {
  const db = await createTestDb('postgres');
  const t = tempDir();
  try {
    const m = migratorFor(db, t.dir);
    m.file('001_a.expand.sql', 'CREATE TABLE a (id int);\n\nINSERT INTO missing VALUES (1);\n');
    const v = await m.migrator.migrate(m.ctx('r1'));
    assert.equal(v.outcome, 'failed');
    assert.match(v.summary, /^applying 001_a\.expand\.sql:3: relation "missing" does not exist \(42P01\) in `INSERT INTO missing VALUES \(1\)`; the file was rolled back/);
    const [{ n }] = await db.db.query<{ n: string }>("SELECT count(*)::text AS n FROM pg_tables WHERE tablename = 'a'");
    assert.equal(n, '0', 'the first statement was rolled back with the file');
    assert.equal((await db.db.query('SELECT 1 FROM cutover_migrations')).length, 0);
  } finally {
    await db.drop();
    t.cleanup();
  }
});

test('PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction; contract files are held as pending, not applied', { skip: noPg ?? false }, async () => {
  const db = await createTestDb('postgres');
  const t = tempDir();
  try {
    const m = migratorFor(db, t.dir);
    m.file('001_t.expand.sql', 'CREATE TABLE t (id int, email text);\n');
    m.file('002_t_email.expand.sql', "SET lock_timeout = '5s';\nCREATE INDEX CONCURRENTLY t_email_idx ON t (email);\n");
    m.file('003_drop_email.contract.sql', "SET lock_timeout = '5s';\nALTER TABLE t DROP COLUMN email;\n");
    const v = await m.migrator.migrate(m.ctx('r1'));
    assert.equal(v.outcome, 'passed', v.summary);
    assert.match(v.summary, /applied 2 expand migration\(s\): 001_t\.expand\.sql, 002_t_email\.expand\.sql.*contract held: 003_drop_email\.contract\.sql/);
    const applied = m.events.find((e) => e.type === 'migrations.applied' && (e.data as { file: string }).file === '002_t_email.expand.sql');
    assert.equal((applied?.data as { transaction: boolean }).transaction, false);
    assert.equal((await db.db.query("SELECT 1 FROM pg_indexes WHERE indexname = 't_email_idx'")).length, 1);
    assert.deepEqual(await columnsOf(db.db, 't'), ['id', 'email']);
    assert.deepEqual(m.migrator.statusSection(), { pending: ['003_drop_email.contract.sql'] });
  } finally {
    await db.drop();
    t.cleanup();
  }
});

test('PostgreSQL: the shadow database has the schema, up to 100 rows per table, consistent foreign keys and sequences past the copied ids', { skip: noPg ?? false }, async () => {
  const db = await createTestDb('postgres');
  try {
    await db.db.query(`
      CREATE TABLE parent (id serial PRIMARY KEY, name text NOT NULL);
      CREATE TABLE child (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id), qty int NOT NULL, twice int GENERATED ALWAYS AS (qty * 2) STORED);
      CREATE INDEX child_parent_idx ON child (parent_id);
      CREATE VIEW big_children AS SELECT * FROM child WHERE qty > 10;
      INSERT INTO parent (name) SELECT 'p' || g FROM generate_series(1, 150) g;
      INSERT INTO child (parent_id, qty) SELECT 151 - g, g FROM generate_series(1, 150) g;`);
    const shadow = await createShadow({ engine: 'postgres', url: db.url, sampleRows: 100, skipRowsOf: [] });
    const s = await connect('postgres', shadow.url);
    try {
      assert.deepEqual(shadow.rows, { parent: 100, child: 100 });
      const count = async (q: string) => Number((await s.query<{ n: string }>(q))[0].n);
      assert.equal(await count('SELECT count(*)::text AS n FROM parent'), 100);
      // Children whose parent was not sampled are removed so the foreign key holds.
      assert.equal(await count('SELECT count(*)::text AS n FROM child'), 50);
      assert.equal(await count('SELECT count(*)::text AS n FROM child c LEFT JOIN parent p ON p.id = c.parent_id WHERE p.id IS NULL'), 0);
      assert.equal(await count("SELECT count(*)::text AS n FROM pg_constraint WHERE contype = 'f' AND conrelid = 'child'::regclass"), 1);
      assert.equal(await count("SELECT count(*)::text AS n FROM pg_indexes WHERE indexname = 'child_parent_idx'"), 1);
      assert.equal(await count('SELECT count(*)::text AS n FROM child WHERE twice = qty * 2'), 50, 'generated column recomputed');
      assert.ok(await count('SELECT count(*)::text AS n FROM big_children') > 0, 'the view works');
      const [{ id }] = await s.query<{ id: number }>("INSERT INTO parent (name) VALUES ('new') RETURNING id");
      assert.equal(id, 151, 'the sequence continues after the real one');
    } finally {
      await s.close();
      await shadow.drop();
    }
    assert.deepEqual(await databasesLike('postgres', shadow.name), []);
  } finally {
    await db.drop();
  }
});

test('MariaDB: the shadow has the stored functions, procedures and triggers, and copying the sample fires no trigger', { skip: noMy ?? false }, async () => {
  const db = await createTestDb('mysql');
  try {
    await db.db.query('CREATE TABLE teams (id int AUTO_INCREMENT PRIMARY KEY, name varchar(50) NOT NULL)');
    await db.db.query('CREATE TABLE audit (id int AUTO_INCREMENT PRIMARY KEY, what varchar(100) NOT NULL)');
    await db.db.query("CREATE FUNCTION shout(s varchar(50)) RETURNS varchar(60) DETERMINISTIC RETURN CONCAT(UPPER(s), '!')");
    await db.db.query('CREATE PROCEDURE add_team(IN n varchar(50)) BEGIN INSERT INTO teams (name) VALUES (n); END');
    await db.db.query("CREATE TRIGGER teams_bi BEFORE INSERT ON teams FOR EACH ROW SET NEW.name = LOWER(NEW.name)");
    await db.db.query("CREATE TRIGGER teams_ai AFTER INSERT ON teams FOR EACH ROW INSERT INTO audit (what) VALUES (CONCAT('team ', NEW.name))");
    // A view that calls a function: routines must exist before views.
    await db.db.query('CREATE VIEW loud_teams AS SELECT id, shout(name) AS loud FROM teams');
    await db.db.query("INSERT INTO teams (name) VALUES ('Red'), ('Blue')");
    const shadow = await createShadow({ engine: 'mysql', url: db.url, sampleRows: 100, skipRowsOf: [] });
    const s = await connect('mysql', shadow.url);
    try {
      assert.deepEqual(shadow.notes, []);
      assert.deepEqual(shadow.rows, { audit: 2, teams: 2 }, 'the sample, and no audit row added by copying it');
      const [{ loud }] = await s.query<{ loud: string }>('SELECT loud FROM loud_teams ORDER BY id LIMIT 1');
      assert.equal(loud, 'RED!');
      await s.query("CALL add_team('Green')");
      const teams = await s.query<{ name: string }>('SELECT name FROM teams ORDER BY id');
      assert.deepEqual(teams.map((t) => t.name), ['red', 'blue', 'green'], 'the procedure, and the BEFORE trigger, work in the shadow');
      const audit = await s.query<{ what: string }>('SELECT what FROM audit ORDER BY id');
      assert.deepEqual(audit.map((a) => a.what), ['team red', 'team blue', 'team green'], 'the AFTER trigger fired once, for the new row');
      const [{ n }] = await db.db.query<{ n: number | string }>('SELECT COUNT(*) AS n FROM teams');
      assert.equal(Number(n), 2, 'the real database is untouched');
    } finally {
      await s.close();
      await shadow.drop();
    }
  } finally {
    await db.drop();
  }
});

test('MariaDB: the shadow database has the tables with foreign keys, generated columns and views, up to 100 rows each; migrations apply there, not to the real one', { skip: noMy ?? false }, async () => {
  const db = await createTestDb('mysql');
  try {
    await db.db.query('CREATE TABLE teams (id int AUTO_INCREMENT PRIMARY KEY, name varchar(50) NOT NULL)');
    await db.db.query("CREATE TABLE users (id int AUTO_INCREMENT PRIMARY KEY, team_id int NOT NULL, email varchar(100) NOT NULL, domain varchar(100) AS (SUBSTRING_INDEX(email, '@', -1)) VIRTUAL, CONSTRAINT users_team_fk FOREIGN KEY (team_id) REFERENCES teams (id))");
    await db.db.query('CREATE VIEW user_emails AS SELECT id, email FROM users');
    await db.db.query("INSERT INTO teams (name) VALUES ('a'), ('b'), ('c')");
    await db.db.query("INSERT INTO users (team_id, email) SELECT 1 + seq % 3, CONCAT('u', seq, '@example.org') FROM seq_1_to_150");
    const shadow = await createShadow({ engine: 'mysql', url: db.url, sampleRows: 100, skipRowsOf: [] });
    const s = await connect('mysql', shadow.url);
    try {
      assert.deepEqual(shadow.rows, { teams: 3, users: 100 });
      assert.deepEqual(shadow.notes, []);
      const [create] = await s.query<Record<string, string>>('SHOW CREATE TABLE users');
      assert.match(create['Create Table'], /CONSTRAINT `users_team_fk` FOREIGN KEY \(`team_id`\) REFERENCES `teams` \(`id`\)/);
      const [v] = await s.query<{ n: number | string; d: string }>('SELECT COUNT(*) AS n, MIN(domain) AS d FROM user_emails JOIN users USING (id)');
      assert.equal(Number(v.n), 100);
      assert.equal(v.d, 'example.org');

      // A migration file applied to the shadow (with the tracking table there, not in the real database).
      const files = await readMigrations(path.join(FIXTURES, 'migrations-mysql', 'v2', 'migrations'));
      const tracking = new Tracking(s, 'cutover_migrations');
      await tracking.ensure();
      await tracking.apply(files[0], { release: 'v2', actor: 'test', lockTimeoutMs: 5_000 });
      assert.deepEqual(await columnsOf(s, 'users'), ['id', 'team_id', 'email', 'domain', 'handle']);
      const [{ handle }] = await s.query<{ handle: string }>('SELECT handle FROM users ORDER BY id LIMIT 1');
      assert.match(handle, /^u\d+$/);
      assert.deepEqual((await tracking.list()).map((r) => `${r.name} ${r.status} ${r.checksum.length}`), ['002_users_handle.expand.sql applied 64']);
      // MySQL DDL commits as it goes: a failing statement names file:line and says what stays applied.
      await assert.rejects(tracking.apply(files[1], { release: 'v2', actor: 'test', lockTimeoutMs: 5_000 }), /003_users_drop_email\.expand\.sql:3: Unknown column 'email' in 'GENERATED ALWAYS AS'.*the 1 statement\(s\) before it stay applied \(no transaction\), the file is not recorded/);
      assert.deepEqual(await columnsOf(db.db, 'users'), ['id', 'team_id', 'email', 'domain'], 'the real database is untouched');
      assert.equal((await db.db.query("SHOW TABLES LIKE 'cutover_migrations'")).length, 0);
    } finally {
      await s.close();
      await shadow.drop();
    }
    assert.deepEqual(await databasesLike('mysql', shadow.name), []);
  } finally {
    await db.drop();
  }
});

test('MariaDB: the compatibility run passes an additive change and catches an expand file that drops a column the old release reads', { skip: noMy ?? false }, async () => {
  const db = await createTestDb('mysql');
  const t = tempDir();
  try {
    await db.db.query('CREATE TABLE users (id int AUTO_INCREMENT PRIMARY KEY, email varchar(100) NOT NULL)');
    await db.db.query("INSERT INTO users (email) VALUES ('ann@example.org'), ('bob@example.org')");
    const config = parseConfig(`environments:\n  process:\n    command: node server.js\ndatabase:\n  url: ${db.url}\n`, { file: 'cutover.yaml', baseDir: t.dir });
    const dir = path.join(FIXTURES, 'migrations-mysql');
    const [addHandle, dropEmail] = await readMigrations(path.join(dir, 'v2', 'migrations'));
    const run = (pending: typeof addHandle[]) => runCompatibility({
      engine: 'mysql', db: config.database!, pending, suspects: pending.map((f) => f.name),
      versions: [{ label: 'old', version: 'v1', path: path.join(dir, 'v1') }, { label: 'new', version: 'v2', path: path.join(dir, 'v2') }],
      process: { command: 'node server.js', env: {}, stopTimeoutMs: 2_000 }, stateDir: t.dir, healthPath: '/health', gates: [],
      tablesWithoutRows: ['cutover_migrations'], signal: new AbortController().signal, logger: silentLogger,
    });

    const ok = await run([addHandle]);
    assert.equal(ok.outcome, 'passed', ok.summary);
    assert.deepEqual(ok.versions.map((v) => `${v.label} ${v.version}: ${v.checks.map((c) => `${c.check} ${c.outcome}`).join(', ')}`), ['old v1: GET / passed, GET /health passed', 'new v2: GET / passed, GET /health passed']);

    const bad = await run([addHandle, dropEmail]);
    assert.equal(bad.outcome, 'failed');
    assert.equal(bad.failure?.label, 'old');
    assert.equal(bad.failure?.check, 'GET /');
    assert.match(bad.failure?.reason ?? '', /Unknown column 'email'/);
    assert.match(bad.summary, /the old release v1 \(the rollback target\) fails GET \/ against the migrated copy/);
    assert.deepEqual(await columnsOf(db.db, 'users'), ['id', 'email'], 'the real database is untouched');
    assert.deepEqual(await databasesLike('mysql', `${db.name}_cshadow_`), []);
  } finally {
    await db.drop();
    t.cleanup();
  }
});

/**
 * The premise of each linter rule added in issue 17, on the real servers: the linter flags the
 * statement, and on PostgreSQL (and MariaDB where the rule applies) running it really breaks a
 * write the old release makes (or, for a replaced view, its read), although the migration
 * itself succeeds. Also: the pipeline's "current type from the database" makes a widening pass
 * and anything else fail closed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { lintSql } from '../src/migrations/lint.ts';
import { schemaFromDatabase } from '../src/migrations/live-schema.ts';
import type { DbEngine } from '../src/config/database.ts';
import type { SchemaState } from '../src/migrations/schema.ts';
import { available, createTestDb, type TestDb } from './migrations-db.ts';

const skipPg = await available('postgres');
const skipMy = await available('mysql');
let pg: TestDb;
let my: TestDb;

before(async () => {
  if (!skipPg) pg = await createTestDb('postgres');
  if (!skipMy) my = await createTestDb('mysql');
});
after(async () => {
  await pg?.drop();
  await my?.drop();
});

async function rulesOf(engine: DbEngine, sql: string, schema?: SchemaState): Promise<{ rule: string; severity: string }[]> {
  const lt = engine === 'postgres' ? "SET lock_timeout = '5s';\n" : 'SET SESSION lock_wait_timeout = 5;\n';
  const r = await lintSql(lt + sql, { file: 'm.expand.sql', engine, schema });
  return r.findings.map((f) => ({ rule: f.rule, severity: f.severity }));
}

async function fresh(db: TestDb, ddl: string[]): Promise<void> {
  for (const s of ['DROP TABLE IF EXISTS products CASCADE', 'DROP VIEW IF EXISTS products_v', ...ddl]) await db.db.query(db.db.engine === 'mysql' ? s.replace(' CASCADE', '') : s);
}

const PG_PRODUCTS = "CREATE TABLE products (id serial PRIMARY KEY, name text NOT NULL, status text NOT NULL DEFAULT 'new')";
const MY_PRODUCTS = "CREATE TABLE products (id int AUTO_INCREMENT PRIMARY KEY, name varchar(100) NOT NULL, status varchar(20) NOT NULL DEFAULT 'new', code varchar(20))";
const OLD_INSERT = "INSERT INTO products (name) VALUES ('')";

test('PostgreSQL: CHECK … NOT VALID succeeds on rows that violate it, then rejects the old release\'s writes (constraint-rejects-old-writes)', { skip: skipPg ?? false }, async () => {
  const m = "ALTER TABLE products ADD CONSTRAINT products_name_not_empty CHECK (name <> '') NOT VALID";
  assert.deepEqual(await rulesOf('postgres', `${m};`), [{ rule: 'constraint-rejects-old-writes', severity: 'error' }]);
  await fresh(pg, [PG_PRODUCTS, OLD_INSERT]);
  await pg.db.query(m); // an existing '' row does not stop it
  await assert.rejects(pg.db.query(OLD_INSERT), /violates check constraint "products_name_not_empty"/);
});

test('PostgreSQL: a trigger on a table the old release writes rejects its inserts (create-trigger)', { skip: skipPg ?? false }, async () => {
  const fn = "CREATE FUNCTION require_sku() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.sku IS NULL THEN RAISE EXCEPTION 'sku required'; END IF; RETURN NEW; END $$";
  const trg = 'CREATE TRIGGER products_require_sku BEFORE INSERT ON products FOR EACH ROW EXECUTE FUNCTION require_sku()';
  assert.deepEqual(await rulesOf('postgres', `ALTER TABLE products ADD COLUMN sku text;\n${fn};\n${trg};`), [{ rule: 'create-trigger', severity: 'error' }]);
  await fresh(pg, [PG_PRODUCTS, 'DROP FUNCTION IF EXISTS require_sku()', 'ALTER TABLE products ADD COLUMN sku text', fn, trg]);
  await assert.rejects(pg.db.query("INSERT INTO products (name) VALUES ('kiwi')"), /sku required/);
});

test('PostgreSQL: a rule rewrites the old release\'s writes: its insert "succeeds" and stores nothing (create-rule)', { skip: skipPg ?? false }, async () => {
  const rule = 'CREATE RULE products_no_insert AS ON INSERT TO products DO INSTEAD NOTHING';
  assert.deepEqual(await rulesOf('postgres', `${rule};`), [{ rule: 'create-rule', severity: 'error' }]);
  await fresh(pg, [PG_PRODUCTS, rule]);
  await pg.db.query("INSERT INTO products (name) VALUES ('kiwi')");
  assert.deepEqual(await pg.db.query('SELECT id FROM products'), []);
});

test('PostgreSQL and MariaDB: a unique index on an existing column rejects the old release\'s duplicate writes (constraint-rejects-old-writes)', { skip: (skipPg ?? skipMy) ?? false }, async () => {
  assert.deepEqual(await rulesOf('postgres', 'CREATE UNIQUE INDEX CONCURRENTLY products_name_key ON products (name);'), [{ rule: 'constraint-rejects-old-writes', severity: 'error' }]);
  await fresh(pg, [PG_PRODUCTS, "INSERT INTO products (name) VALUES ('kiwi')", 'CREATE UNIQUE INDEX CONCURRENTLY products_name_key ON products (name)']);
  await assert.rejects(pg.db.query("INSERT INTO products (name) VALUES ('kiwi')"), /duplicate key value violates unique constraint/);
  assert.ok((await rulesOf('mysql', 'CREATE UNIQUE INDEX products_name_key ON products (name) ALGORITHM=INPLACE LOCK=NONE;')).some((f) => f.rule === 'constraint-rejects-old-writes' && f.severity === 'error'));
  await fresh(my, [MY_PRODUCTS, "INSERT INTO products (name) VALUES ('kiwi')", 'CREATE UNIQUE INDEX products_name_key ON products (name) ALGORITHM=INPLACE LOCK=NONE']);
  await assert.rejects(my.db.query("INSERT INTO products (name) VALUES ('kiwi')"), /Duplicate entry/);
});

test('MariaDB: a CHECK constraint and a trigger reject the old release\'s writes (constraint-rejects-old-writes, create-trigger)', { skip: skipMy ?? false }, async () => {
  assert.ok((await rulesOf('mysql', "ALTER TABLE products ADD CONSTRAINT products_name_not_empty CHECK (name <> '');")).some((f) => f.rule === 'constraint-rejects-old-writes'));
  await fresh(my, [MY_PRODUCTS, "ALTER TABLE products ADD CONSTRAINT products_name_not_empty CHECK (name <> '')"]);
  await assert.rejects(my.db.query(OLD_INSERT), /CONSTRAINT .*products_name_not_empty.* failed/i);
  const trg = "CREATE TRIGGER products_require_code BEFORE INSERT ON products FOR EACH ROW BEGIN IF NEW.code IS NULL THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'code required'; END IF; END";
  assert.deepEqual(await rulesOf('mysql', `${trg};`), [{ rule: 'create-trigger', severity: 'error' }]);
  await fresh(my, [MY_PRODUCTS, trg]);
  await assert.rejects(my.db.query("INSERT INTO products (name) VALUES ('kiwi')"), /code required/);
});

test('PostgreSQL and MariaDB: SET DEFAULT NULL drops the default the old release relies on (drop-default)', { skip: (skipPg ?? skipMy) ?? false }, async () => {
  assert.deepEqual(await rulesOf('postgres', 'ALTER TABLE products ALTER COLUMN status SET DEFAULT NULL;'), [{ rule: 'drop-default', severity: 'error' }]);
  await fresh(pg, [PG_PRODUCTS, 'ALTER TABLE products ALTER COLUMN status SET DEFAULT NULL']);
  await assert.rejects(pg.db.query("INSERT INTO products (name) VALUES ('kiwi')"), /null value in column "status"/);
  // MariaDB refuses SET DEFAULT NULL on a NOT NULL column; on a nullable one the old release's rows silently get NULL.
  assert.deepEqual(await rulesOf('mysql', 'ALTER TABLE products ALTER COLUMN status SET DEFAULT NULL;'), [{ rule: 'drop-default', severity: 'error' }]);
  await fresh(my, ["CREATE TABLE products (id int AUTO_INCREMENT PRIMARY KEY, name varchar(100) NOT NULL, status varchar(20) NULL DEFAULT 'new')", 'ALTER TABLE products ALTER COLUMN status SET DEFAULT NULL']);
  await my.db.query("INSERT INTO products (name) VALUES ('kiwi')");
  assert.deepEqual(await my.db.query('SELECT status FROM products'), [{ status: null }]);
});

test('PostgreSQL and MariaDB: replacing a view the old release reads (replace-view): PostgreSQL refuses changed columns, MariaDB takes them and the old read fails', { skip: (skipPg ?? skipMy) ?? false }, async () => {
  const { SchemaState } = await import('../src/migrations/schema.ts');
  const known = async () => {
    const schema = new SchemaState();
    await lintSql('CREATE TABLE products (id int, name text, title text);\nCREATE VIEW products_v AS SELECT id, name FROM products;', { file: '001.sql', schema });
    return schema;
  };
  assert.deepEqual(await rulesOf('postgres', 'CREATE OR REPLACE VIEW products_v AS SELECT id, title FROM products;', await known()), [{ rule: 'replace-view', severity: 'error' }]);
  assert.deepEqual(await rulesOf('postgres', 'CREATE OR REPLACE VIEW products_v AS SELECT id, name, title FROM products;', await known()), [], 'appending a column is what PostgreSQL allows, and safe');
  await fresh(pg, ['CREATE TABLE products (id int, name text, title text)', 'CREATE VIEW products_v AS SELECT id, name FROM products']);
  await assert.rejects(pg.db.query('CREATE OR REPLACE VIEW products_v AS SELECT id, title FROM products'), /cannot change name of view column/);
  await pg.db.query('CREATE OR REPLACE VIEW products_v AS SELECT id, name, title FROM products');

  assert.deepEqual(await rulesOf('mysql', 'CREATE OR REPLACE VIEW products_v AS SELECT id, code FROM products;'), [{ rule: 'replace-view', severity: 'error' }]);
  await fresh(my, [MY_PRODUCTS, 'CREATE VIEW products_v AS SELECT id, name FROM products', 'CREATE OR REPLACE VIEW products_v AS SELECT id, code FROM products']);
  await assert.rejects(my.db.query('SELECT name FROM products_v'), /Unknown column 'name'/);
});

test('a type change whose current type is only in the database: a widening passes, anything else fails closed; without the database it fails closed', { skip: (skipPg ?? skipMy) ?? false }, async () => {
  await fresh(pg, ['CREATE TABLE products (id int, name varchar(50), price numeric(10,2))']);
  const pgSchema = () => schemaFromDatabase(pg.db);
  assert.deepEqual(await rulesOf('postgres', 'ALTER TABLE products ALTER COLUMN name TYPE varchar(200);', await pgSchema()), []);
  assert.deepEqual(await rulesOf('postgres', 'ALTER TABLE products ALTER COLUMN price TYPE numeric(14,2);', await pgSchema()), []);
  assert.deepEqual(await rulesOf('postgres', 'ALTER TABLE products ALTER COLUMN name TYPE varchar(20);', await pgSchema()), [{ rule: 'change-column-type', severity: 'error' }]);
  assert.deepEqual(await rulesOf('postgres', 'ALTER TABLE products ALTER COLUMN name TYPE varchar(200);'), [{ rule: 'change-column-type', severity: 'error' }]);
  await fresh(my, [MY_PRODUCTS]);
  assert.deepEqual(await rulesOf('mysql', 'ALTER TABLE products MODIFY code varchar(40);', await schemaFromDatabase(my.db)), []);
  assert.deepEqual(await rulesOf('mysql', 'ALTER TABLE products MODIFY code int;', await schemaFromDatabase(my.db)), [{ rule: 'change-column-type', severity: 'error' }]);
  assert.deepEqual(await rulesOf('mysql', 'ALTER TABLE products MODIFY code varchar(40);'), [{ rule: 'change-column-type', severity: 'error' }]);
});

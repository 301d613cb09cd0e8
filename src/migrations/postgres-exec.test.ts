/**
 * Checks the linter's PostgreSQL claims against the real server on the machine
 * (127.0.0.1:5432, trust auth, database `test`), through psql: the labelled "safe"
 * statements really run, and the volatile-default rule's premise holds (a stable now()
 * default does not rewrite the table; clock_timestamp() does). Skipped when no server is
 * reachable — CI machines need not run PostgreSQL for the linter's own tests.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { LABELLED } from '../../test/fixtures/labelled-migrations.ts';

const PSQL_TIMEOUT_MS = 20_000;

/** psql reading SQL from stdin: every statement autocommits, so CONCURRENTLY works. */
function psqlStdin(sql: string, user: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-U', user, '-d', 'test', '-f', '-'], { env: { ...process.env, PGCONNECT_TIMEOUT: '3' }, timeout: PSQL_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    child.stdin?.end(sql);
  });
}

async function findUser(): Promise<string | undefined> {
  for (const user of ['postgres', 'root']) {
    try {
      await psqlStdin('SELECT 1;', user);
      return user;
    } catch {
      // try the next user
    }
  }
  return undefined;
}

const BASE = `
CREATE TABLE users (id bigint PRIMARY KEY, email varchar(50), name varchar(20), phone text NOT NULL, legacy_flag boolean);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, total numeric(12,2));
CREATE TABLE old_sessions (id int);
CREATE TYPE order_status AS ENUM ('new', 'paid');
CREATE INDEX users_phone_idx ON users (phone);
`;

function inFreshSchema(name: string, body: string): string {
  return `DROP SCHEMA IF EXISTS ${name} CASCADE;\nCREATE SCHEMA ${name};\nSET search_path = ${name};\n${body}\nRESET search_path;\nDROP SCHEMA ${name} CASCADE;\n`;
}

const user = await findUser();
const skip = user === undefined ? 'no PostgreSQL at 127.0.0.1:5432 (user postgres or root, database test)' : false;
const schemaName = `cutover_lint_${process.pid}`;

test('the labelled safe PostgreSQL statements execute on the real server', { skip }, async () => {
  for (const c of LABELLED.filter((x) => x.engine === 'postgres' && x.expect === 'safe')) {
    const setup = c.schema ?? BASE;
    await assert.doesNotReject(psqlStdin(inFreshSchema(schemaName, `${setup}\n${c.sql}`), user ?? ''), c.name);
  }
});

test('a now() default does not rewrite the table, a clock_timestamp() default does (the volatile-default premise)', { skip }, async () => {
  const node = "SELECT relfilenode FROM pg_class WHERE oid = 't'::regclass;";
  const out = await psqlStdin(
    inFreshSchema(schemaName, `CREATE TABLE t (id int);\nINSERT INTO t SELECT generate_series(1, 100);\n${node}\nALTER TABLE t ADD COLUMN a timestamptz DEFAULT now();\n${node}\nALTER TABLE t ADD COLUMN b timestamptz DEFAULT clock_timestamp();\n${node}`),
    user ?? '',
  );
  const [before, afterStable, afterVolatile] = out.trim().split('\n');
  assert.equal(afterStable, before, 'now() default rewrote the table');
  assert.notEqual(afterVolatile, afterStable, 'clock_timestamp() default did not rewrite the table');
});

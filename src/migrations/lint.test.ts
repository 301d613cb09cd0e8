import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCutoverError } from '../lib/errors.ts';
import { lintFiles, lintSql, phaseOf } from './lint.ts';
import { readMysqlStatement } from './mysql.ts';
import { splitMysql } from './mysql-tokens.ts';

const LT = "SET lock_timeout = '5s';\n";
const rules = (findings: { rule: string }[]): string[] => findings.map((f) => f.rule);

test('phase comes from the file name', () => {
  assert.equal(phaseOf('db/007_drop_email.contract.sql', ''), 'contract');
  assert.equal(phaseOf('db/007_add_email.expand.sql', ''), 'expand');
  assert.equal(phaseOf('db/007_add_email.EXPAND.SQL', ''), 'expand');
});

test('phase comes from a header comment, and defaults to expand', () => {
  assert.equal(phaseOf('db/007.sql', '-- cutover:phase contract\nALTER TABLE t DROP COLUMN c;'), 'contract');
  assert.equal(phaseOf('db/007.sql', '--cutover:phase expand\n'), 'expand');
  assert.equal(phaseOf('db/007.sql', 'ALTER TABLE t DROP COLUMN c;'), 'expand');
});

test('a file name and header that disagree, or an unknown phase, are usage errors', () => {
  assert.throws(() => phaseOf('x.expand.sql', '-- cutover:phase contract'), (e) => isCutoverError(e, 'CUTOVER_ERR_USAGE'));
  assert.throws(() => phaseOf('x.sql', '-- cutover:phase later'), (e) => isCutoverError(e, 'CUTOVER_ERR_USAGE') && /x\.sql:1: cutover:phase must be one of expand, contract/.test(e.message));
});

test('breaking changes are errors in expand and info in contract; locking problems stay errors in both', async () => {
  const sql = `${LT}ALTER TABLE users DROP COLUMN email;\nCREATE INDEX users_name_idx ON users (name);`;
  const expand = await lintSql(sql, { file: 'a.sql' });
  const contract = await lintSql(sql, { file: 'a.contract.sql' });
  assert.equal(expand.phase, 'expand');
  assert.equal(contract.phase, 'contract');
  const sev = (r: typeof expand, rule: string): string | undefined => r.findings.find((f) => f.rule === rule)?.severity;
  assert.equal(sev(expand, 'drop-column'), 'error');
  assert.equal(sev(contract, 'drop-column'), 'info');
  assert.equal(sev(expand, 'index-not-concurrent'), 'error');
  assert.equal(sev(contract, 'index-not-concurrent'), 'error');
});

test('a finding carries file, statement start line, column, why, fix and the statement', async () => {
  const sql = `${LT}\n-- a comment before the statement is not its start\n/* nor is\n   this one */\nALTER TABLE users\n  DROP COLUMN email;`;
  const [f] = (await lintSql(sql, { file: 'db/a.sql' })).findings;
  assert.equal(f.file, 'db/a.sql');
  assert.equal(f.line, 6);
  assert.equal(f.column, 1);
  assert.equal(f.rule, 'drop-column');
  assert.match(f.message, /users\.email/);
  assert.match(f.why, /old version/);
  assert.match(f.fix, /contract/);
  assert.equal(f.statement, 'ALTER TABLE users DROP COLUMN email');
});

test('line numbers stay right after multibyte text (the parser counts bytes)', async () => {
  const sql = `${LT}COMMENT ON TABLE users IS 'Benutzer — ünïcödé 👩‍💻';\nALTER TABLE users DROP COLUMN email;`;
  const [f] = (await lintSql(sql, { file: 'a.sql' })).findings;
  assert.equal(f.line, 3);
  assert.equal(f.statement, 'ALTER TABLE users DROP COLUMN email');
});

test('a suppression with a reason on the line before is applied and recorded', async () => {
  const sql = `${LT}-- cutover:allow drop-column the old version never reads email since 4.2\nALTER TABLE users DROP COLUMN email;`;
  const [f] = (await lintSql(sql, { file: 'a.sql' })).findings;
  assert.equal(f.rule, 'drop-column');
  assert.equal(f.severity, 'error');
  assert.deepEqual(f.suppressed, { reason: 'the old version never reads email since 4.2' });
});

test('a suppression at the end of the statement line applies to that statement, not the next', async () => {
  const sql = `${LT}ALTER TABLE users DROP COLUMN email; -- cutover:allow drop-column unused since 4.2\nALTER TABLE users DROP COLUMN phone;`;
  const findings = (await lintSql(sql, { file: 'a.sql' })).findings;
  assert.deepEqual(findings.map((f) => [f.line, f.rule, f.suppressed?.reason]), [
    [2, 'drop-column', 'unused since 4.2'],
    [3, 'drop-column', undefined],
  ]);
});

test('one comment can suppress several rules on a multi-line statement', async () => {
  const sql = `${LT}-- cutover:allow drop-column,rename-column both unused since 4.2\nALTER TABLE users\n  DROP COLUMN email;\nALTER TABLE users RENAME COLUMN a TO b;`;
  const findings = (await lintSql(sql, { file: 'a.sql' })).findings;
  assert.equal(findings.find((f) => f.rule === 'drop-column')?.suppressed?.reason, 'both unused since 4.2');
  // The suppression belongs to the next statement only.
  assert.equal(findings.find((f) => f.rule === 'rename-column')?.suppressed, undefined);
});

test('a suppression without a reason is an error and suppresses nothing', async () => {
  const sql = `${LT}-- cutover:allow drop-column\nALTER TABLE users DROP COLUMN email;`;
  const findings = (await lintSql(sql, { file: 'a.sql' })).findings;
  assert.deepEqual(rules(findings).sort(), ['drop-column', 'suppression-without-reason']);
  assert.ok(findings.every((f) => f.suppressed === undefined && f.severity === 'error'));
  assert.equal(findings.find((f) => f.rule === 'suppression-without-reason')?.line, 2);
});

test('unknown directives and rule ids are errors; a suppression that matches nothing is a warning', async () => {
  const sql = `${LT}-- cutover:alow drop-column typo\n-- cutover:allow drop-colum typo in rule\nALTER TABLE users ADD COLUMN x text; -- cutover:allow drop-column not needed here`;
  const findings = (await lintSql(sql, { file: 'a.sql' })).findings;
  assert.deepEqual(findings.map((f) => [f.line, f.rule, f.severity]), [
    [2, 'invalid-directive', 'error'],
    [3, 'invalid-directive', 'error'],
    [4, 'unused-suppression', 'warning'],
  ]);
});

test('missing lock_timeout is reported once, on the first locking statement', async () => {
  const sql = 'CREATE TABLE t (id int);\nALTER TABLE users ADD COLUMN a text;\nALTER TABLE users ADD COLUMN b text;';
  const findings = (await lintSql(sql, { file: 'a.contract.sql' })).findings;
  assert.deepEqual(findings.map((f) => [f.line, f.rule, f.severity]), [[2, 'missing-lock-timeout', 'warning']]);
});

test('SET LOCAL lock_timeout and set_config both count', async () => {
  for (const set of ["BEGIN;\nSET LOCAL lock_timeout = '2s';\n", "SELECT set_config('lock_timeout', '2s', false);\n"]) {
    const findings = (await lintSql(`${set}ALTER TABLE users ADD COLUMN a text;`, { file: 'a.sql' })).findings;
    assert.deepEqual(findings, [], set);
  }
});

test('CONCURRENTLY inside BEGIN … COMMIT is an error; after COMMIT it is fine', async () => {
  const sql = `${LT}BEGIN;\nCREATE INDEX CONCURRENTLY a_idx ON t (a);\nCOMMIT;\nCREATE INDEX CONCURRENTLY b_idx ON t (b);\nDROP INDEX CONCURRENTLY c_idx;`;
  const findings = (await lintSql(sql, { file: 'a.contract.sql' })).findings;
  assert.deepEqual(findings.map((f) => [f.line, f.rule, f.severity]), [[3, 'concurrently-in-transaction', 'error']]);
});

test('CONCURRENTLY in a file marked as wrapped in a transaction is an error', async () => {
  const sql = `-- cutover:transaction wrapped\n${LT}CREATE INDEX CONCURRENTLY a_idx ON t (a);`;
  const findings = (await lintSql(sql, { file: 'a.sql' })).findings;
  assert.deepEqual(rules(findings), ['concurrently-in-transaction']);
  assert.match(findings[0].message, /wrapped/);
});

test('a PostgreSQL parse error names file:line:column and the parser message', async () => {
  const sql = `${LT}-- é\nALTER TABLE users ADD COLUMN ok text;\n\nALTER TABEL users ADD COLUMN typo text;`;
  await assert.rejects(lintSql(sql, { file: 'db/5.sql' }), (e) => {
    assert.ok(isCutoverError(e, 'CUTOVER_ERR_MIGRATION'));
    assert.match(e.message, /^db\/5\.sql:5:7: postgres parse error: syntax error at or near "TABEL"$/);
    assert.equal(e.details?.['line'], 5);
    return true;
  });
});

test('a MySQL lexing error names file:line', async () => {
  const sql = "SET SESSION lock_wait_timeout = 5;\nALTER TABLE t ADD COLUMN c ENUM('a);";
  await assert.rejects(lintSql(sql, { file: 'm.sql', engine: 'mysql' }), (e) => isCutoverError(e, 'CUTOVER_ERR_MIGRATION') && /^m\.sql:2:33: mysql parse error: unterminated ' quote$/.test(e.message));
});

test('a MySQL DDL statement that no grammar accepts and names no object is a parse error', async () => {
  const sql = 'SET SESSION lock_wait_timeout = 5;\nALTER TABEL users ADD COLUMN x INT;';
  await assert.rejects(lintSql(sql, { file: 'm.sql', engine: 'mysql' }), (e) => isCutoverError(e, 'CUTOVER_ERR_MIGRATION') && /^m\.sql:2:7: mysql parse error: Expected .* but "T" found\.$/.test(e.message));
});

test('the engine comes from a file header, which wins over the option', async () => {
  const sql = '-- cutover:engine mysql\nSET SESSION lock_wait_timeout = 5;\nALTER TABLE users CHANGE email email_address VARCHAR(50);';
  const r = await lintSql(sql, { file: 'a.sql', engine: 'postgres' });
  assert.equal(r.engine, 'mysql');
  assert.ok(rules(r.findings).includes('rename-column'));
});

test('tables created in the same file are new: nothing on them breaks the old version or blocks traffic', async () => {
  const sql = 'CREATE TABLE t (id int, a varchar(10));\nALTER TABLE t ADD COLUMN b int NOT NULL;\nALTER TABLE t ALTER COLUMN a TYPE int USING a::int;\nCREATE UNIQUE INDEX t_a ON t (a);\nALTER TABLE t RENAME COLUMN b TO c;\nDROP TABLE t;';
  assert.deepEqual((await lintSql(sql, { file: 'a.sql' })).findings, []);
});

test('a type change whose current type is unknown fails closed (an error that says why), even when it may be a widening', async () => {
  const [f] = (await lintSql(`${LT}ALTER TABLE users ALTER COLUMN email TYPE varchar(200);`, { file: 'a.sql' })).findings;
  assert.equal(f.rule, 'change-column-type');
  assert.equal(f.severity, 'error');
  assert.match(f.message, /current type is neither in the linted files nor shown by the database, so this fails closed; if it only widens/);
  const [g] = (await lintSql(`${LT}ALTER TABLE users ALTER COLUMN email TYPE integer;`, { file: 'a.sql' })).findings;
  assert.equal(g.severity, 'error');
});

test('lintFiles reads files in order, so an earlier CREATE TABLE tells a later file the column types', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'cutover-lint-'));
  await writeFile(join(dir, '1.sql'), 'CREATE TABLE users (id int, email varchar(50), score int);');
  await writeFile(join(dir, '2.sql'), `${LT}ALTER TABLE users ALTER COLUMN email TYPE varchar(80);\nALTER TABLE users ALTER COLUMN score TYPE bigint;`);
  const [, second] = await lintFiles([join(dir, '1.sql'), join(dir, '2.sql')]);
  assert.deepEqual(second.findings.map((f) => [f.line, f.rule, f.severity]), [[3, 'change-column-type', 'error']]);
  assert.match(second.findings[0].message, /from int4 to int8/);
  await assert.rejects(lintFiles([join(dir, 'missing.sql')]), (e) => isCutoverError(e, 'CUTOVER_ERR_USAGE'));
});

test('MySQL statements are read by node-sql-parser, and by tokens where its grammars give up', () => {
  const read = (sql: string): string => {
    const { statements } = splitMysql(sql);
    return readMysqlStatement(statements[0], sql).readBy;
  };
  assert.equal(read('ALTER TABLE t DROP COLUMN a'), 'MySQL');
  assert.equal(read('ALTER TABLE t ALTER COLUMN a DROP DEFAULT'), 'tokens');
});

test('the MySQL splitter honours quotes, comments and DELIMITER', () => {
  const sql = "-- c1\nINSERT INTO t VALUES ('a;b', \"c;d\", `e;f`); # c2\n/* c3; */\nDELIMITER //\nCREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; END//\nDELIMITER ;\nSELECT 1;";
  const { statements, comments } = splitMysql(sql);
  assert.equal(statements.length, 3);
  assert.equal(comments.length, 3);
  assert.match(sql.slice(statements[1].start, statements[1].end), /^CREATE TRIGGER .* END$/);
});

test('missing-lock-timeout: not reported when the runner sets a lock timeout (database.lockTimeout), unless the file clears it', async () => {
  const plain = await lintSql('ALTER TABLE users ADD COLUMN locale text;', { file: 'a.sql' });
  assert.deepEqual(plain.findings.map((f) => f.rule), ['missing-lock-timeout']);
  const set = await lintSql('ALTER TABLE users ADD COLUMN locale text;', { file: 'a.sql', lockTimeoutSet: true });
  assert.deepEqual(set.findings, []);
  const cleared = await lintSql('SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN locale text;', { file: 'a.sql', lockTimeoutSet: true });
  assert.match(cleared.findings[0]?.message ?? '', /after this file cleared the lock timeout/);
});

import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { runLintMigrations } from './lint-cli.ts';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/migrations/', import.meta.url));
const fx = (name: string): string => `${FIXTURES}${name}`;

async function run(files: string[], opts: Parameters<typeof runLintMigrations>[1] = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await runLintMigrations(files, opts, { stdout, stderr });
  return { code, stdout: out, stderr: err };
}

test('safe migrations exit 0, including a contract file that drops a column', async () => {
  const r = await run([fx('001_add_nickname.expand.sql'), fx('002_email_index.expand.sql'), fx('003_drop_legacy.contract.sql'), fx('007_header_contract.sql')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /003_drop_legacy\.contract\.sql:3: info drop-column drops column users\.legacy_flag/);
  assert.match(r.stdout, /0 errors, 0 warnings, 0 suppressed in 4 files/);
});

test('human output: file:line: severity rule message, why, and the safe alternative; suppressions are shown', async () => {
  const r = await run([fx('004_unsafe.sql')]);
  assert.equal(r.code, 1);
  const lines = r.stdout.split('\n');
  assert.ok(lines.some((l) => /004_unsafe\.sql:2: error drop-column drops column users\.email$/.test(l)), r.stdout);
  assert.ok(lines.some((l) => /^ {4}→ safe alternative: Stop using the column/.test(l)));
  assert.ok(lines.some((l) => /004_unsafe\.sql:6: suppressed rename-column .*\(allowed: the old version reads this through the users_v view\)$/.test(l)));
  assert.ok(lines.some((l) => /004_unsafe\.sql:7: suppressed index-not-concurrent .*\(allowed: users has 40 rows\)$/.test(l)));
  assert.ok(lines.some((l) => /004_unsafe\.sql:8: error suppression-without-reason/.test(l)));
  assert.ok(lines.some((l) => /004_unsafe\.sql:9: error drop-table drops table sessions$/.test(l)));
  assert.match(r.stdout, /3 errors, 1 warning, 2 suppressed in 1 file/);
});

test('JSON output follows the stable schema', async () => {
  const r = await run([fx('004_unsafe.sql'), fx('006_orders.mysql.sql')], { format: 'json' });
  assert.equal(r.code, 1);
  const doc = JSON.parse(r.stdout) as {
    files: { file: string; phase: string; engine: string; findings: Record<string, unknown>[] }[];
    summary: { errors: number; warnings: number; suppressed: number };
  };
  assert.deepEqual(Object.keys(doc), ['files', 'summary']);
  assert.deepEqual(doc.files.map((f) => [f.file.replace(FIXTURES, ''), f.phase, f.engine]), [
    ['004_unsafe.sql', 'expand', 'postgres'],
    ['006_orders.mysql.sql', 'expand', 'mysql'],
  ]);
  const first = doc.files[0].findings[0];
  assert.deepEqual(Object.keys(first).sort(), ['column', 'fix', 'line', 'message', 'rule', 'severity', 'statement', 'why']);
  assert.equal(first.line, 2);
  assert.equal(first.statement, 'ALTER TABLE users DROP COLUMN email');
  const suppressed = doc.files[0].findings.filter((f) => f.suppressed !== undefined);
  assert.deepEqual(suppressed.map((f) => f.suppressed), [{ reason: 'the old version reads this through the users_v view' }, { reason: 'users has 40 rows' }]);
  assert.deepEqual(
    doc.files[1].findings.map((f) => [f.line, f.rule, f.severity]),
    [
      [4, 'add-constraint-validates', 'warning'],
      [5, 'rename-column', 'error'],
      [5, 'change-column-type', 'error'], // the current type is unknown: fails closed
    ],
  );
  assert.deepEqual(doc.summary, { errors: 5, warnings: 2, suppressed: 2 });
});

test('GitHub output is workflow-command annotations', async () => {
  const r = await run([fx('004_unsafe.sql')], { format: 'github' });
  assert.equal(r.code, 1);
  const ann = r.stdout.split('\n').filter((l) => l.startsWith('::'));
  assert.match(ann[0], /^::error file=[^,]*004_unsafe\.sql,line=2,col=1,title=drop-column::drops column users\.email%0AThe old version/);
  assert.ok(ann.some((l) => /^::notice file=[^,]*,line=6,col=1,title=rename-column::.*\(suppressed: the old version reads this through the users_v view\)$/.test(l)));
  assert.ok(ann.some((l) => l.startsWith('::warning ') && l.includes('title=missing-lock-timeout')));
  assert.ok(ann.every((l) => !/[\r\n]/.test(l)));
});

test('a missing file is a usage error (exit 2) and the other files are still reported', async () => {
  const r = await run([fx('001_add_nickname.expand.sql'), fx('nope.sql')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /nope\.sql: cannot read migration file \(ENOENT\)/);
  assert.match(r.stdout, /in 1 file/);
});

test('a parse error exits 2 and names file:line with the parser message', async () => {
  const r = await run([fx('005_broken.sql')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /005_broken\.sql:4:7: postgres parse error: syntax error at or near "TABEL"/);
});

test('no files is a usage error', async () => {
  const r = await run([]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no migration files given/);
});

test('--engine mysql applies to files without an engine header', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'cutover-lint-'));
  await writeFile(join(dir, 'm.sql'), 'SET SESSION lock_wait_timeout = 5;\nALTER TABLE users CHANGE email email_address VARCHAR(50);\n');
  const r = await run([join(dir, 'm.sql')], { engine: 'mysql', format: 'json' });
  assert.equal(r.code, 1);
  const doc = JSON.parse(r.stdout) as { files: { engine: string; findings: { rule: string }[] }[] };
  assert.equal(doc.files[0].engine, 'mysql');
  assert.ok(doc.files[0].findings.some((f) => f.rule === 'rename-column'));
});

/** The command line as users run it: the real binary, real exit codes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cli, configYaml, freePorts, tempDir, writeConfig } from './helpers.ts';
import { parseConfig } from '../src/config/load.ts';
import { INIT_TEMPLATE } from '../src/config/init-template.ts';

test('cutover --help lists the contract commands', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = await cli(['--help'], { cwd: dir });
    assert.equal(r.code, 0);
    for (const c of ['init', 'up', 'deploy', 'promote', 'abort', 'rollback', 'status', 'history', 'lint-migrations']) {
      assert.match(r.stdout, new RegExp(`\\b${c}\\b`), `help mentions ${c}`);
    }
  } finally { cleanup(); }
});

test('cutover init writes a commented starter that loads cleanly, and refuses to overwrite it', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = await cli(['init'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const text = readFileSync(path.join(dir, 'cutover.yaml'), 'utf8');
    assert.equal(text, INIT_TEMPLATE);
    assert.match(text, /# live traffic/);
    const cfg = parseConfig(text, { file: 'cutover.yaml', baseDir: dir });
    assert.equal(cfg.environments.provider, 'process');
    assert.equal(cfg.router.drainTimeout, 30_000);
    const again = await cli(['init'], { cwd: dir });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /exists; pass --force/);
  } finally { cleanup(); }
});

test('a bad config exits 2 and names file, line and field', async () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(path.join(dir, 'cutover.yaml'), [
      'app: shop',
      'router:',
      '  listen: 127.0.0.1:8080',
      '  drainTimeout: soon',
      'environments:',
      '  process:',
      '    command: node server.js',
      '    instances: many',
      'helth:',
      '  path: /health',
    ].join('\n'));
    const r = await cli(['up'], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cutover\.yaml:4: router\.drainTimeout: expected a duration like "500ms", "30s" or "5m", got "soon"/);
    assert.match(r.stderr, /cutover\.yaml:8: environments\.process\.instances: expected (int|number)/);
    assert.match(r.stderr, /cutover\.yaml:9: helth: unknown setting "helth"/);
  } finally { cleanup(); }
});

test('YAML syntax errors and missing settings point at their line', async () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFileSync(path.join(dir, 'a.yaml'), 'app: shop\nrouter:\n  listen: [\n');
    const r1 = await cli(['-c', 'a.yaml', 'up'], { cwd: dir });
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /a\.yaml:\d+: YAML: /);
    writeFileSync(path.join(dir, 'b.yaml'), 'app: shop\nenvironments:\n  provider: static\n');
    const r2 = await cli(['-c', 'b.yaml', 'status'], { cwd: dir });
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /b\.yaml:2: environments\.static: provider is "static"/);
    writeFileSync(path.join(dir, 'c.yaml'), 'app: shop\nenvironments:\n  process:\n    command: node s.js\n    env:\n      DB: ${CUTOVER_TEST_UNSET_VAR}\n');
    const r3 = await cli(['-c', 'c.yaml', 'up'], { cwd: dir });
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /c\.yaml:6: environments\.process\.env\.DB: environment variable CUTOVER_TEST_UNSET_VAR is not set/);
  } finally { cleanup(); }
});

test('client commands: no config is a usage error (2), no daemon is unreachable (3)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const none = await cli(['status'], { cwd: dir });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /pass -c FILE, or set CUTOVER_ADMIN_URL/);
    writeConfig(dir, configYaml(await freePorts()));
    const down = await cli(['status'], { cwd: dir });
    assert.equal(down.code, 3);
    assert.match(down.stderr, /cannot reach the Cutover daemon/);
    const badUsage = await cli(['deploy'], { cwd: dir });
    assert.equal(badUsage.code, 2);
    const badLimit = await cli(['history', '--limit', 'x'], { cwd: dir });
    assert.equal(badLimit.code, 2);
  } finally { cleanup(); }
});

test('every commented example in the init template is valid configuration', () => {
  // From `gates:` on, uncomment the example blocks (the static provider example above stays commented).
  const at = INIT_TEMPLATE.indexOf('gates: []\n');
  const examples = INIT_TEMPLATE.slice(at).replace('gates: []\n', 'gates:\n')
    .split('\n')
    .map((l) => (/^# ?(warmup|analysis|database|notifications|switch):/.test(l) || /^# {2,}\S/.test(l) ? l.slice(2) : l))
    .join('\n');
  const uncommented = INIT_TEMPLATE.slice(0, at) + examples;
  assert.notEqual(uncommented, INIT_TEMPLATE);
  const cfg = parseConfig(uncommented, { file: 'cutover.yaml', baseDir: '/tmp', env: { DATABASE_URL: 'postgres://u@127.0.0.1/db', CUTOVER_WEBHOOK_SECRET: '0123456789abcdef0123' } });
  assert.equal(cfg.gates.length, 6);
  assert.ok(cfg.analysis);
  assert.deepEqual(cfg.switch?.steps, [0.05, 0.25]);
  assert.ok(cfg.database);
  assert.equal(cfg.notifications.length, 1);
  assert.ok(cfg.warmup);
});

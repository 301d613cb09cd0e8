/**
 * What `npm pack` ships: the product, not its tests. No test file, fixture or test helper is in
 * the package, and nothing shipped imports a file the package leaves out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { ROOT, importsOf } from './import-graph.ts';

test('the package holds no tests or test helpers, and every shipped import stays inside it', { timeout: 60_000 }, () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const files = (JSON.parse(out) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
  assert.ok(files.includes('src/cli/main.ts') && files.includes('bin/cutover.js'), 'the product is packed');
  assert.deepEqual(files.filter((f) => /\.test\.ts$|(^|\/)fixtures\/|test-support|^test\//.test(f)), []);
  const shipped = new Set(files);
  const outside = files.filter((f) => f.startsWith('src/') && f.endsWith('.ts'))
    .flatMap((f) => importsOf(f).filter((e) => !shipped.has(e.to)).map((e) => `${e.from}:${e.line} -> ${e.to}`));
  assert.deepEqual(outside, []);
});

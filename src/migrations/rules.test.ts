import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { RULES } from './rules.ts';
import { rulesTableMarkdown } from './rules-doc.ts';

test('rule ids are unique kebab-case, and every rule has a why and a fix', () => {
  assert.equal(new Set(RULES.map((r) => r.id)).size, RULES.length);
  for (const r of RULES) {
    assert.match(r.id, /^[a-z]+(-[a-z]+)*$/);
    assert.ok(r.why.length > 20 && r.fix.length > 20, r.id);
  }
});

test('breaking rules are errors in expand and milder in contract; locking rules are the same in both', () => {
  for (const r of RULES) {
    if (r.kind === 'breaking') {
      assert.equal(r.severity.expand, 'error', r.id);
      assert.notEqual(r.severity.contract, 'error', r.id);
    } else {
      assert.equal(r.severity.expand, r.severity.contract, r.id);
    }
  }
});

test('README.md shows the rules table generated from RULES', async () => {
  const readme = await readFile(new URL('../../docs/migrations.md', import.meta.url), 'utf8');
  const m = /<!-- rules:start -->\n([\s\S]*?)\n<!-- rules:end -->/.exec(readme);
  assert.ok(m !== null, 'docs/migrations.md lacks the rules markers');
  assert.equal(m[1], rulesTableMarkdown(), 'docs/migrations.md rules table is stale: regenerate it from rulesTableMarkdown()');
});

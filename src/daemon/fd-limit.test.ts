import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connectionBudget, readNofile } from './fd-limit.ts';

test('the connection budget leaves the reserve and two descriptors a connection; live gets 90 %', () => {
  assert.deepEqual(connectionBudget(20_000, { live: 'auto', preview: 'auto', hasPreview: true }), { limit: 20_000, reserve: 1_024, live: 8_539, preview: 949 });
  assert.deepEqual(connectionBudget(3_000, { live: 'auto', preview: 'auto', hasPreview: true }), { limit: 3_000, reserve: 750, live: 1_012, preview: 113 });
  assert.equal(connectionBudget(20_000, { live: 'auto', preview: 'auto', hasPreview: false }).live, 9_488, 'no preview listener: live gets all');
  assert.equal(connectionBudget(20_000, { live: 500, preview: 'auto', hasPreview: true }).live, 500, 'a configured number wins');
  assert.equal(connectionBudget(20_000, { live: 'auto', preview: 'auto', reserve: 4_000, hasPreview: true }).reserve, 4_000);
  assert.equal(connectionBudget(100, { live: 'auto', preview: 'auto', hasPreview: true }).live, 115, 'never below the minimum');
  assert.ok(connectionBudget(Number.POSITIVE_INFINITY, { live: 'auto', preview: 'auto', hasPreview: true }).live > 400_000);
});

test('readNofile reads this process\'s limit from /proc', () => {
  const l = readNofile();
  assert.ok(l !== null && l.soft > 0 && l.hard >= l.soft, JSON.stringify(l));
});

// Node.js itself raises the soft limit to the hard one when it starts (node.cc, PlatformInit), so
// the child lowers its own soft limit first, as a runtime or wrapper that does not would leave it.
test('raiseNofile lifts a lowered soft limit back to the hard one through prlimit (limits 1024:4096)', { timeout: 30_000 }, () => {
  const mod = fileURLToPath(new URL('./fd-limit.ts', import.meta.url));
  const script = `import { spawnSync } from 'node:child_process'; spawnSync('prlimit', ['--pid', String(process.pid), '--nofile=1024:4096']);` +
    `import(${JSON.stringify(mod)}).then((m) => { console.log(JSON.stringify(m.raiseNofile())); });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { before: { soft: number }; after: { soft: number; hard: number }; raised: boolean; problem: string | null };
  assert.equal(out.before.soft, 1024);
  assert.deepEqual([out.after.soft, out.after.hard, out.raised, out.problem], [4096, 4096, true, null]);
  // Without prlimit on PATH it says what to do instead.
  const lowerThenRaise = script.replace("spawnSync('prlimit',", "spawnSync('/usr/bin/prlimit',");
  const r2 = spawnSync(process.execPath, ['--input-type=module', '-e', lowerThenRaise], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, PATH: '/nonexistent' } });
  const out2 = JSON.parse(r2.stdout.trim().split('\n').at(-1) ?? '{}') as { raised: boolean; problem: string };
  assert.equal(out2.raised, false);
  assert.match(out2.problem, /stays at 1024 \(hard limit 4096\): prlimit \(util-linux\) is not installed; raise it with `ulimit -n 4096`/);
});

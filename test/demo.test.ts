/** The README's demo command keeps working: v1 then v2 under load, no failed request. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ROOT, instancesOf, killAll, waitFor } from './helpers.ts';

function demo(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'examples', 'demo.ts'), '--connections', '20', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    // 'exit', not 'close': a daemon left running must not hold the demo's pipes open.
    child.on('exit', (c) => resolve({ code: c ?? 1, out }));
  });
}

test('npm run demo deploys v1, releases v2 under load with 0 failed requests', { timeout: 120_000 }, async () => {
  const { code, out } = await demo([]);
  assert.equal(code, 0, out);
  assert.match(out, /requests failed\s+0\n/);
  assert.match(out, /live version\s+v2 on green/);
  assert.match(out, /time to switch\s+[\d.]+ ms/);
  assert.match(out, /answers by version v1: \d+, v2: \d+ +\(from a sampler: GET \/version every 20 ms beside the load, not counted above\)/);
  const dir = /state and config in (\S+)\)/.exec(out)?.[1];
  assert.ok(dir && !existsSync(dir), 'the temp dir is gone');
  assert.doesNotMatch(out, new RegExp(`cd ${dir}`), 'no hint points at the deleted dir');
});

test('npm run demo -- --keep returns to the prompt and leaves a daemon to try the CLI on', { timeout: 120_000 }, async () => {
  const { code, out } = await demo(['--keep']);
  const pid = Number(/stop it with: kill (\d+)/.exec(out)?.[1]);
  const dir = /^ +cd (\S+)$/m.exec(out)?.[1];
  try {
    assert.equal(code, 0, out);
    assert.ok(pid > 0 && dir && existsSync(dir), out);
    process.kill(pid, 0); // still running after the demo returned
    const alias = /alias cutover='(\S+) (\S+)'/.exec(out);
    assert.ok(alias, 'a command that works outside the checkout');
    const st = spawnSync(alias[1], [alias[2], 'status', '--json'], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    assert.equal(st.status, 0, st.stderr);
    assert.equal((JSON.parse(st.stdout) as { live: { version: string } }).live.version, 'v2');
  } finally {
    if (pid > 0) {
      try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
      await waitFor(() => { try { process.kill(pid, 0); return false; } catch { return true; } }, { timeoutMs: 20_000, what: 'the kept daemon to stop' });
    }
    if (dir) {
      killAll(instancesOf(path.join(dir, '.cutover')));
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

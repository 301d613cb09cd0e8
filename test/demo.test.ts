/** The README's demo command keeps working: v1 then v2 under load, no failed request. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './helpers.ts';

test('npm run demo deploys v1, releases v2 under load with 0 failed requests', async () => {
  const { code, out } = await new Promise<{ code: number; out: string }>((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'examples', 'demo.ts'), '--connections', '20'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('close', (c) => resolve({ code: c ?? 1, out }));
  });
  assert.equal(code, 0, out);
  assert.match(out, /requests failed\s+0\n/);
  assert.match(out, /live version\s+v2 on green/);
  assert.match(out, /time to switch\s+[\d.]+ ms/);
});

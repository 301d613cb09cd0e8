/** Client commands read cutover.yaml but need only admin and stateDir: variables the daemon needs may be unset. */
import { test } from 'node:test';
import assert from 'node:assert/strict';

const base = 'environments:\n  process:\n    command: node server.js\n';

test('client commands do not need the daemon\'s environment: an unset ${DATABASE_URL} is the daemon\'s problem, not `cutover status`\'s', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { loadClientConfigFile, loadConfigFile } = await import('../src/config/load.ts');
  const { cli, ROOT } = await import('./helpers.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'cutover-client-'));
  try {
    const file = path.join(dir, 'cutover.yaml');
    // admin on a port nothing listens on: the client gets as far as trying to reach the daemon.
    writeFileSync(file, `${base}admin:\n  listen: 127.0.0.1:1\ndatabase:\n  url: \${CUTOVER_TEST_UNSET_DB_URL}\n`);
    assert.throws(() => loadConfigFile(file, {}), /database\.url: environment variable CUTOVER_TEST_UNSET_DB_URL is not set/);
    const c = loadClientConfigFile(file, {});
    assert.equal(c.stateDir, path.join(dir, '.cutover'));
    const r = await cli(['status', '-c', file], { cwd: ROOT, env: { CUTOVER_ADMIN_URL: '', CUTOVER_TEST_UNSET_DB_URL: '' } });
    assert.equal(r.code, 3, `exit 3 (daemon unreachable), not 2 (config): ${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

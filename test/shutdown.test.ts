/**
 * Stopping `cutover up` never leaves its router process behind when it was asked to stop it:
 * a SIGTERM during start-up (router already started, daemon not up yet) is kept and acted on once
 * up, and a start that fails after it began a router that serves nothing live stops that router.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { BIN, TEST_TOKEN, alive, configYaml, freePorts, routersOf, tempDir, waitFor, writeConfig } from './helpers.ts';

function up(cwd: string) {
  const child = spawn(process.execPath, [BIN, 'up'], { cwd, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return { child, output: () => out, exited };
}

test('SIGTERM while `cutover up` starts (its router process already running): it comes up, stops, and stops its router', async () => {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports));
  const d = up(dir);
  try {
    // The router process exists before the daemon says it is up (it is started first).
    const [pid] = await waitFor(() => { const r = routersOf(stateDir); return r.length > 0 ? r : null; }, { what: 'the router process', timeoutMs: 20_000, intervalMs: 5 });
    d.child.kill('SIGTERM');
    const end = await d.exited;
    assert.deepEqual(end, { code: 0, signal: null }, `a signal during start-up is handled, not fatal:\n${d.output()}`);
    assert.match(d.output(), /shutting down/);
    await waitFor(() => !alive(pid), { what: `router process ${pid} to exit`, timeoutMs: 8_000 });
    assert.deepEqual(routersOf(stateDir), []);
  } finally {
    d.child.kill('SIGKILL');
    for (const p of routersOf(stateDir)) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    cleanup();
  }
});

test('a start that fails after starting a router that serves nothing live leaves no router process', async () => {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports));
  // The admin port is taken: the daemon fails after it started its router.
  const blocker = net.createServer().listen(ports.admin, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  const d = up(dir);
  try {
    const end = await d.exited;
    assert.notEqual(end.code, 0, d.output());
    assert.match(d.output(), /EADDRINUSE|in use/);
    await waitFor(() => routersOf(stateDir).length === 0, { what: 'no router process left', timeoutMs: 8_000 });
  } finally {
    blocker.close();
    d.child.kill('SIGKILL');
    for (const p of routersOf(stateDir)) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    cleanup();
  }
});

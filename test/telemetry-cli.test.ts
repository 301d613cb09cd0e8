/**
 * The CLI's live views against a real daemon: `deploy` with a spinner on a terminal and plain
 * lines elsewhere, `status --watch` following a switch, `report --json`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { telemetryPlugin } from '../src/telemetry/plugin.ts';
import { main } from '../src/cli/main.ts';
import { watchStatus } from '../src/cli/status-watch.ts';
import type { Io } from '../src/cli/context.ts';
import type { ReleaseReport } from '../src/telemetry/report.ts';
import { SHOP_V1, SHOP_V2, TEST_TOKEN, configYaml, freePorts, instancesOf, killAll, tempDir, waitFor } from './helpers.ts';

let daemon: Daemon;
let stateDir: string;
let cleanup: () => void;

function fakeIo(tty: boolean): Io & { out: () => string } {
  let out = '';
  const stdout = { isTTY: tty, write: (s: string) => { out += s; return true; } };
  return {
    stdout: stdout as unknown as Io['stdout'], stderr: { write: () => true } as unknown as Io['stderr'],
    env: { CUTOVER_ADMIN_URL: daemon.adminUrl(), CUTOVER_TOKEN: TEST_TOKEN, TERM: 'xterm-256color' }, cwd: '/',
    out: () => out,
  };
}

before(async () => {
  const t = tempDir();
  cleanup = t.cleanup;
  const config = parseConfig(configYaml(await freePorts(), { instances: 1, drainTimeout: '1s', startTimeout: '5s' }), { file: 'cutover.yaml', baseDir: t.dir });
  stateDir = config.stateDir;
  daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: [telemetryPlugin({ processMetrics: false })] });
});

after(async () => {
  await daemon?.stop({ stopInstances: true });
  killAll(instancesOf(stateDir));
  cleanup?.();
});

test('deploy on a terminal shows a spinner with the running phase and ends with a summary line', async () => {
  const io = fakeIo(true);
  const code = await main(['node', 'cutover', 'deploy', 'v1', '--path', SHOP_V1], io);
  const out = io.out();
  assert.equal(code, 0, out);
  assert.match(out, /\r\x1b\[2K {2}[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] health… \d+ms/, 'a spinner on the phase in progress, with its time');
  assert.match(out, /✓ health +\d+ms {2}1\/1 instance\(s\) healthy\n/);
  // What a terminal shows last: the text after the final carriage return + clear-line.
  const lastLine = out.trimEnd().split('\n').at(-1)!.split('\r\x1b[2K').at(-1)!;
  assert.match(lastLine, /^✓ v1 is live on blue; switch took \S+ \(total \S+\)$/, 'the last line is the summary');
  assert.ok(out.trimEnd().endsWith(`\r\x1b[2K${lastLine}`), 'the spinner is cleared before the summary');
});

test('deploy elsewhere prints plain step lines only', async () => {
  const io = fakeIo(false);
  const code = await main(['node', 'cutover', 'deploy', 'v2', '--path', SHOP_V2], io);
  const out = io.out();
  assert.equal(code, 0, out);
  assert.doesNotMatch(out, /\x1b/, 'no control codes in a log');
  assert.match(out, /^▶ deploy v2 to green \(live: v1 on blue\)$/m);
  assert.match(out, /^ {2}✓ switch +\d+ms {2}live → green \(v2\)/m);
  assert.match(out.trimEnd().split('\n').at(-1)!, /^✓ v2 is live on green/);
});

test('status --watch follows a switch as it happens', async () => {
  const io = fakeIo(false);
  const ac = new AbortController();
  const client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN, actor: 'test' });
  const watching = watchStatus(io, client, { json: true, signal: ac.signal });
  try {
    const live = () => io.out().trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { live: { color: string; version: string } }).live);
    await waitFor(() => live().length >= 1, { what: 'first state' });
    assert.deepEqual(live()[0], { ...live()[0], color: 'green', version: 'v2' });
    await daemon.controller.rollback({ actor: 'test' });
    await waitFor(() => live().some((l) => l.color === 'blue' && l.version === 'v1'), { what: 'the rollback to show', timeoutMs: 5_000 });
  } finally {
    ac.abort();
    await watching;
    await client.close();
  }
});

test('report --json has the figures of this daemon’s history', async () => {
  const io = fakeIo(false);
  const code = await main(['node', 'cutover', 'report', '--since', '1d', '--json'], io);
  assert.equal(code, 0);
  const r = JSON.parse(io.out()) as ReleaseReport;
  assert.equal(r.deployments.total, 2);
  assert.deepEqual(r.cutovers, { switched: 2, kept: 1, rolledBack: 1 });
  assert.equal(r.rollbacks.manual, 1);
  assert.ok(r.meanTimeToRollbackMs !== null && r.meanTimeToRollbackMs > 0);
  assert.equal(r.timeToSwitchMs?.count, 2);
  const usage = fakeIo(false);
  assert.equal(await main(['node', 'cutover', 'report', '--since', 'forever'], usage), 2, 'a bad --since is a usage error');
});

/**
 * kill -9 of the daemon at each point of the pipeline (issue #6; DESIGN promise 5). The daemon runs
 * as a real `cutover up` process with the test-only hook CUTOVER_TEST_CRASH_AT=<point>:<version>
 * (src/controller/fault-points.ts), so it SIGKILLs itself at an exact moment. After a restart:
 * the live colour is the one the state says, healthy and serving; the interrupted deployment is
 * marked with the phase it died in; every process carrying the state directory's mark is one the
 * new daemon tracks (no orphans), one per instance slot (no duplicates); history is intact; and a
 * new deployment works.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Agent, request } from 'undici';
import { SHOP_V1, SHOP_V2, cli, configYaml, freePorts, instancesOf, killAll, startDaemonProcess, tempDir, waitFor, writeConfig, type DaemonProcess } from './helpers.ts';

interface Status {
  live: { color: string; version: string; healthy: number } | null;
  standby: { color: string; version: string; state: string } | null;
  deployment: unknown;
  environments: Record<string, { role: string; version: string | null; instances: { id: string; pid: number | null; healthy: boolean }[] }>;
}
interface History { deployments: { id: string; version: string; status: string; phase: string; error: { message: string } | null }[] }

interface Expect {
  /** What serves live after the restart. */
  live: { color: string; version: string };
  standby: { color: string; version: string; state: 'warm' | 'retired' } | null;
  /** v2's deployment after recovery. */
  v2: { status: string; error?: RegExp };
  /** Processes expected: instances of every colour the state keeps running. */
  processes: number;
  /** Reasons of recovery events that must (true) or must not (false) have been recorded. */
  recovery?: [RegExp, boolean][];
}

/** Recovery events as stored (read-only look at the state database). */
function recoveryReasons(stateDir: string): string[] {
  const db = new DatabaseSync(path.join(stateDir, 'state.db'), { readOnly: true });
  try {
    return (db.prepare("SELECT reason FROM events WHERE type = 'recovery' ORDER BY seq").all() as { reason: string }[]).map((r) => r.reason);
  } finally {
    db.close();
  }
}

async function status(dir: string): Promise<Status> {
  const r = await cli(['status', '--json'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Status;
}

function waitExit(d: DaemonProcess, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    if (d.child.exitCode !== null || d.child.signalCode !== null) { resolve(d.child.signalCode); return; }
    const t = setTimeout(() => reject(new Error(`the daemon did not crash within ${timeoutMs} ms:\n${d.output().slice(-2_000)}`)), timeoutMs);
    d.child.once('exit', (_code, signal) => { clearTimeout(t); resolve(signal); });
  });
}

async function crashScenario(point: string, expect: Expect, o: { keepFor?: string; crashVersion?: string } = {}): Promise<void> {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports, { keepFor: o.keepFor ?? '10m', drainTimeout: '2s' }));
  const live = `http://127.0.0.1:${ports.live}`;
  let daemon = await startDaemonProcess(dir, { CUTOVER_TEST_CRASH_AT: `${point}:${o.crashVersion ?? 'v2'}` });
  const agent = new Agent({ connections: 2 });
  try {
    const d1 = await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: dir });
    assert.equal(d1.code, 0, d1.stdout + d1.stderr);
    const d2 = await cli(['deploy', 'v2', '--path', SHOP_V2, '--no-wait'], { cwd: dir });
    assert.equal(d2.code, 0, d2.stderr);
    assert.equal(await waitExit(daemon, 20_000), 'SIGKILL', 'the daemon killed itself at the crash point');

    daemon = await startDaemonProcess(dir);
    // Served first, before adoption finishes: the same live colour the state recorded.
    const first = await request(`${live}/`, { dispatcher: agent });
    const body = (await first.body.json()) as { version: string; color: string };
    assert.deepEqual([body.color, body.version], [expect.live.color, expect.live.version]);

    await waitFor(async () => (await status(dir)).deployment === null, { what: 'recovery to finish' });
    const s = await status(dir);
    assert.deepEqual(s.live && [s.live.color, s.live.version], [expect.live.color, expect.live.version]);
    assert.ok((s.live?.healthy ?? 0) >= 1, 'the live colour has a healthy instance');
    assert.deepEqual(s.standby && [s.standby.color, s.standby.version, s.standby.state], expect.standby && [expect.standby.color, expect.standby.version, expect.standby.state]);

    // No orphans, no duplicates: the marked processes are exactly the tracked instances.
    await waitFor(() => instancesOf(stateDir).length === expect.processes, { what: `${expect.processes} instance processes`, timeoutMs: 10_000 });
    const tracked = Object.values((await status(dir)).environments).flatMap((e) => e.instances);
    assert.deepEqual(tracked.map((i) => i.pid).sort(), instancesOf(stateDir).sort(), 'every running process is a tracked instance');
    assert.equal(new Set(tracked.map((i) => i.id)).size, tracked.length, 'one process per instance slot');

    // History intact; the interrupted deployment says where it stopped.
    const h = JSON.parse((await cli(['history', '--json'], { cwd: dir })).stdout) as History;
    assert.deepEqual(h.deployments.map((d) => d.version), ['v2', 'v1']);
    assert.equal(h.deployments[1].status, 'succeeded');
    assert.equal(h.deployments[0].status, expect.v2.status);
    if (expect.v2.error) assert.match(h.deployments[0].error?.message ?? '', expect.v2.error);

    for (const [re, present] of expect.recovery ?? []) {
      assert.equal(recoveryReasons(stateDir).some((r) => re.test(r)), present, `recovery event ${re}: ${recoveryReasons(stateDir).join(' | ')}`);
    }

    // Serving steadily, and deployable again.
    for (let i = 0; i < 20; i++) {
      const r = await request(`${live}/`, { dispatcher: agent });
      assert.equal(r.statusCode, 200);
      assert.equal(((await r.body.json()) as { version: string }).version, expect.live.version);
    }
    const again = await cli(['deploy', 'v3', '--path', SHOP_V1], { cwd: dir });
    assert.equal(again.code, 0, again.stdout + again.stderr);
  } finally {
    await agent.close();
    await daemon.stop('SIGKILL');
    killAll(instancesOf(stateDir));
    cleanup();
  }
}

const beforeSwitch = (phase: string): Expect => ({
  live: { color: 'blue', version: 'v1' }, standby: null, processes: 2,
  v2: { status: 'interrupted', error: new RegExp(`interrupted during ${phase}`) },
  recovery: [[/adopted 2 of 2 running live instance\(s\) of blue/, true]],
});
const afterSwitch = (phase: string): Expect => ({
  live: { color: 'green', version: 'v2' }, standby: { color: 'blue', version: 'v1', state: 'warm' }, processes: 4,
  v2: { status: 'interrupted', error: new RegExp(`interrupted during ${phase}`) },
  recovery: [[/adopted 2 of 2 running live instance\(s\) of green/, true], [/adopted 2 of 2 running standby instance\(s\) of blue/, true]],
});

test('kill -9 in provision (processes started, not yet recorded): no orphan survives, v1 stays live', { timeout: 90_000 }, () => crashScenario('provision', beforeSwitch('provision')));
test('kill -9 in health: the candidate is stopped, v1 stays live', { timeout: 90_000 }, () => crashScenario('health', beforeSwitch('health')));
test('kill -9 in gates: the candidate is stopped, v1 stays live', { timeout: 90_000 }, () => crashScenario('gates', beforeSwitch('gates')));
test('kill -9 in the switch, after the write-ahead commit, before the swap: the restart completes it (v2 live, v1 warm standby)', { timeout: 90_000 }, () => crashScenario('switch', afterSwitch('switch')));
test('kill -9 while the old colour drains: v2 live, v1 warm standby', { timeout: 90_000 }, () => crashScenario('drain', afterSwitch('switch')));
test('kill -9 in analysis: v2 stays live (not judged: recorded as interrupted), v1 warm standby', { timeout: 90_000 }, () => crashScenario('analysis', afterSwitch('analysis')));
test('kill -9 in retirement (standby stopped, not yet recorded): marked retired, not restarted', { timeout: 90_000 }, () => crashScenario('retirement', {
  live: { color: 'green', version: 'v2' }, standby: { color: 'blue', version: 'v1', state: 'retired' }, processes: 2,
  v2: { status: 'succeeded' },
  recovery: [[/was due for retirement .* marked retired, not restarted/, true], [/starting v1 again/, false]],
}, { keepFor: '1s', crashVersion: 'v1' }));

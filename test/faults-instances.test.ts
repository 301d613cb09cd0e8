/**
 * Instance faults through a real `cutover up` with the process provider (issue #6):
 * - a candidate that crashes during health, or during gates, is aborted cleanly: the deployment
 *   fails at once with the reason, traffic never moves, no candidate process is left;
 * - every live instance killed: the healthy warm standby takes the traffic and a `failover` event
 *   says why (the static-provider variant is test/static-provider-daemon.test.ts; a single live
 *   instance killed is restarted with no traffic to it while down: test/daemon-pipeline.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Agent, request } from 'undici';
import { FIXTURES, SHOP_V1, SHOP_V2, TEST_TOKEN, cli, configYaml, freePorts, instancesOf, killAll, startDaemonProcess, tempDir, waitFor, writeConfig } from './helpers.ts';

interface History { deployments: { version: string; status: string; phase: string; error: { message: string } | null }[] }

async function setup(extra = ''): Promise<{ dir: string; stateDir: string; live: string; admin: string; cleanup: () => void }> {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports, { startTimeout: '20s', extra }));
  return { dir, stateDir: path.join(dir, '.cutover'), live: `http://127.0.0.1:${ports.live}`, admin: `http://127.0.0.1:${ports.admin}/api/v1`, cleanup };
}

async function latest(dir: string): Promise<History['deployments'][number]> {
  return (JSON.parse((await cli(['history', '--json'], { cwd: dir })).stdout) as History).deployments[0];
}

test('a candidate that crashes while starting fails its deployment at once (not at the 20 s health timeout); v1 untouched', { timeout: 60_000 }, async () => {
  const env = await setup();
  const daemon = await startDaemonProcess(env.dir);
  try {
    assert.equal((await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: env.dir })).code, 0);
    const t0 = performance.now();
    const d = await cli(['deploy', 'v2', '--path', path.join(FIXTURES, 'crash-on-start')], { cwd: env.dir });
    const took = performance.now() - t0;
    assert.equal(d.code, 1, 'deployment failed');
    // Not at the health timeout: that would take ≥ 20 s (the crash is at 200 ms). No tighter bound:
    // a busy machine stretches the rest (issue 16); the message below names the exit as the cause.
    assert.ok(took < 20_000, `failed after ${Math.round(took)} ms`);
    const last = await latest(env.dir);
    assert.equal(last.status, 'failed');
    assert.match(last.error?.message ?? '', /candidate instance green-\d of v2 exited with code 3 during (provision|health); last log line: "fatal: cannot start" \(log: .*green-\d\.log\)/);
    assert.equal(instancesOf(env.stateDir).length, 2, 'only v1 runs');
    const r = await request(`${env.live}/`);
    assert.equal(((await r.body.json()) as { version: string }).version, 'v1');
  } finally {
    await daemon.stop('SIGTERM');
    killAll(instancesOf(env.stateDir));
    env.cleanup();
  }
});

test('a candidate that crashes during its gates: the gate is cut short, the deployment fails with the crash, traffic never moved', { timeout: 90_000 }, async () => {
  // The gate outlasts the candidate (which dies 1.5 s after it starts) by far: a cut-short gate
  // ends within seconds, an uncut one after 30 s, whatever the machine's load (issue 16).
  const env = await setup(['gates:', '  - name: soak', '    command: sleep 30', '    timeout: 60s'].join('\n'));
  const daemon = await startDaemonProcess(env.dir);
  const agent = new Agent({ connections: 4 });
  try {
    assert.equal((await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: env.dir })).code, 0);
    // Traffic during the whole attempt: every answer must come from v1.
    let stop = false;
    const versions = new Map<string, number>();
    const load = (async () => {
      while (!stop) {
        const r = await request(`${env.live}/`, { dispatcher: agent });
        const v = r.statusCode === 200 ? ((await r.body.json()) as { version: string }).version : `HTTP ${r.statusCode}`;
        versions.set(v, (versions.get(v) ?? 0) + 1);
      }
    })();
    const t0 = performance.now();
    const d = await cli(['deploy', 'v2', '--path', path.join(FIXTURES, 'crash-after-start')], { cwd: env.dir });
    const took = performance.now() - t0;
    stop = true;
    await load;
    assert.equal(d.code, 1, d.stdout);
    assert.ok(took < 25_000, `the 30 s gate was cut short (${Math.round(took)} ms)`);
    const last = await latest(env.dir);
    assert.equal(last.status, 'failed');
    assert.equal(last.phase, 'gates');
    assert.match(last.error?.message ?? '', /candidate instance green-\d of v2 exited with code 1 during gates; it wrote nothing to its log \(log: .*green-\d\.log\)/);
    assert.deepEqual([...versions.keys()], ['v1'], `answers: ${JSON.stringify([...versions])}`);
    await waitFor(() => instancesOf(env.stateDir).length === 2, { what: 'the candidate gone' });
  } finally {
    await agent.close();
    await daemon.stop('SIGTERM');
    killAll(instancesOf(env.stateDir));
    env.cleanup();
  }
});

test('every live instance killed (process provider): the warm standby takes the traffic, with a failover event', { timeout: 60_000 }, async () => {
  const env = await setup();
  const daemon = await startDaemonProcess(env.dir);
  const agent = new Agent({ connections: 4 });
  try {
    assert.equal((await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: env.dir })).code, 0);
    assert.equal((await cli(['deploy', 'v2', '--path', SHOP_V2], { cwd: env.dir })).code, 0);
    const st = JSON.parse((await cli(['status', '--json'], { cwd: env.dir })).stdout) as { environments: Record<string, { instances: { pid: number }[] }> };
    const greenPids = st.environments.green.instances.map((i) => i.pid);
    assert.equal(greenPids.length, 2);
    let stop = false;
    const counts = { ok: 0, failed: 0, v1: 0 };
    const load = (async () => {
      while (!stop) {
        try {
          const r = await request(`${env.live}/`, { dispatcher: agent });
          const b = await r.body.text();
          if (r.statusCode === 200) { counts.ok++; if (b.includes('"v1"')) counts.v1++; } else counts.failed++;
        } catch {
          counts.failed++;
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    killAll(greenPids); // kill -9 both live instances at once
    await waitFor(() => counts.v1 > 50, { what: 'the standby (v1) to serve', timeoutMs: 10_000 });
    stop = true;
    await load;
    // The failover event (not tied to a deployment) is in the event stream's backlog.
    const ev = await request(`${env.admin}/events`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    let text = '';
    for await (const chunk of ev.body) {
      text += chunk.toString();
      if (/event: failover/.test(text)) break;
    }
    ev.body.destroy();
    assert.match(text, /every live instance of green is down/);
    console.log(`# failover: ${counts.ok} answered, ${counts.failed} failed while both live instances were killed`);
    // The failed requests are the ones in flight on the killed processes (reported in docs/reliability.md).
    assert.ok(counts.failed <= 20, `failed: ${counts.failed}`);
  } finally {
    await agent.close();
    await daemon.stop('SIGTERM');
    killAll(instancesOf(env.stateDir));
    env.cleanup();
  }
});

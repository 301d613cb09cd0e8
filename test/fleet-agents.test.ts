/**
 * `cutover agent` (issue 11, item 5) against a real 3-member etcd cluster on loopback: two agent
 * processes run a colour's instances for a controller (`cutover up` with fleet: and
 * environments.process.hosts), a fleet `cutover router` serves them under keep-alive load, and
 * every failed request is counted. One sequence, each step building on the last: a deploy naming
 * an agent that is not running is refused naming it; blue then green deployed through the agents;
 * kill -9 of one agent and its instances: traffic continues on the other agent's instance, the
 * dead one shown unhealthy; the agent restarted runs its share again; an agent killed alone and
 * restarted adopts its running instance (same pid).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, FIXTURES, SHOP_V1, SHOP_V2, TEST_TOKEN, alive, cli, freePorts, instancesOf, killAll, startDaemonProcess, tempDir, waitFor, writeConfig, type DaemonProcess, type Ports } from './helpers.ts';
import { startEtcdCluster } from './etcd-cluster.ts';
import { keepAliveLoad, type LoadCount } from './load.ts';

interface InstanceRow { id: string; host: string; port: number; pid: number; healthy: boolean }
interface EnvRow { role: string; version: string | null; instances: InstanceRow[]; healthy: number }
interface AgentRow { id: string; registered: boolean; instances: { id: string }[] }
interface Status { agents: AgentRow[]; live: { color: string; version: string } | null; router: { revision: number }; routers: { id: string; revision: number; stale: boolean }[]; environments: Record<'blue' | 'green', EnvRow> }

function yaml(o: { ports: Ports; endpoints: string[]; prefix: string; hosts?: string; fleet?: boolean }): string {
  return [
    'app: shop',
    `router: { listen: 127.0.0.1:${o.ports.live}, preview: 127.0.0.1:${o.ports.preview}, drainTimeout: 2s }`,
    `admin: { listen: 127.0.0.1:${o.ports.admin} }`,
    'environments:',
    '  provider: process',
    `  process: { command: node server.js, instances: 2, startTimeout: 20s, stopTimeout: 2s, hosts: ${o.hosts ?? '[a1, a2]'} }`,
    'health: { interval: 100ms, timeout: 500ms }',
    ...(o.fleet === false ? [] : [
      'fleet:',
      `  etcd: { endpoints: [${o.endpoints.join(', ')}], prefix: ${o.prefix} }`,
      '  leaseTtl: 2s',
      '  ackTimeout: 3s',
    ]),
  ].join('\n');
}

/** The recorded events (the event stream's backlog) until one matches `re`; returns that event's data. */
async function eventText(adminPort: number, re: RegExp): Promise<string> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 10_000);
  try {
    const res = await fetch(`http://127.0.0.1:${adminPort}/api/v1/events`, { headers: { authorization: `Bearer ${TEST_TOKEN}` }, signal: ac.signal });
    let text = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += Buffer.from(chunk).toString();
      const line = text.split('\n').find((l) => l.startsWith('data: ') && re.test(l));
      if (line) return line;
    }
    return text;
  } catch (err) {
    throw new Error(`no event matching ${re}: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

interface Proc { child: ChildProcess; output: () => string }

function startProc(dir: string, args: string[], what: string, env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, CUTOVER_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-40_000); if (out.includes('is up')) resolve({ child, output: () => out }); });
    child.stderr!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-40_000); });
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}: ${out}`)));
    setTimeout(() => reject(new Error(`${what} did not come up: ${out}`)), 20_000).unref();
  });
}

test('environments.process.hosts without fleet: is a config error naming the file and line', async () => {
  const { dir, cleanup } = tempDir('cutover-agents-cfg-');
  try {
    writeConfig(dir, yaml({ ports: await freePorts(), endpoints: [], prefix: '/x', fleet: false }));
    const r = await cli(['up'], { cwd: dir });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /cutover\.yaml:6: environments\.process\.hosts: instances on agent hosts need fleet:/);
    const a = await cli(['agent', '--id', 'a1'], { cwd: dir });
    assert.equal(a.code, 2, a.stdout + a.stderr);
    const bad = await cli(['agent', '--id', 'no/slash'], { cwd: dir });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--id: expected an agent id/);
  } finally {
    cleanup();
  }
});

test('two agents run a colour\'s instances; one is killed, traffic continues on the other\'s', { timeout: 240_000 }, async (t) => {
  const etcd = await startEtcdCluster(3);
  const { dir, cleanup } = tempDir('cutover-agents-');
  const prefix = `/cutover-agents-${process.pid}`;
  const procs: ChildProcess[] = [];
  const agentDirs: string[] = [];
  let daemon: DaemonProcess | null = null;
  let load: { stop: () => Promise<LoadCount>; count: LoadCount } | null = null;
  t.after(async () => {
    await load?.stop().catch(() => {});
    await daemon?.stop('SIGKILL');
    for (const p of procs) p.kill('SIGKILL');
    for (const d of agentDirs) killAll(instancesOf(d));
    await etcd.stop();
    cleanup();
  });
  const mk = async (name: string) => {
    const d = path.join(dir, name);
    mkdirSync(d);
    const ports = await freePorts();
    writeConfig(d, yaml({ ports, endpoints: etcd.endpoints, prefix }));
    return { dir: d, ports };
  };
  const ctl = await mk('controller');
  const r0 = await mk('r0');
  const a1 = await mk('a1');
  const a2 = await mk('a2');
  const agentDir = (d: string, id: string) => path.join(d, '.cutover', 'agents', id);
  agentDirs.push(agentDir(a1.dir, 'a1'), agentDir(a2.dir, 'a2'));
  const startAgent = async (d: string, id: string) => {
    const p = await startProc(d, ['agent', '--id', id, '--address', '127.0.0.1'], `agent ${id}`);
    procs.push(p.child);
    return p;
  };
  let agent1 = await startAgent(a1.dir, 'a1');
  const router = await startProc(r0.dir, ['router', '--id', 'r0'], 'router r0', { CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_ADMIN_URL: `http://127.0.0.1:${ctl.ports.admin}` });
  procs.push(router.child);
  daemon = await startDaemonProcess(ctl.dir);
  const status = async (): Promise<Status> => {
    const r = await cli(['status', '--json'], { cwd: ctl.dir });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Status;
  };
  const pidsOn = (d: string) => new Set(instancesOf(d));

  await t.test('a deploy naming an agent that is not registered is refused, naming it; nothing starts', async () => {
    const d = await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: ctl.dir });
    assert.equal(d.code, 1, d.stdout + d.stderr);
    assert.match(d.stdout + d.stderr, /agent "a2" \(environments\.process\.hosts\) is not registered in etcd: is `cutover agent --id a2` running/);
    assert.equal(pidsOn(agentDirs[0]).size, 0, 'a1 runs nothing');
    assert.equal((await status()).live, null);
  });

  let agent2 = await startAgent(a2.dir, 'a2');

  await t.test('blue, then green, deployed through the two agents: one instance on each', async () => {
    for (const [v, p, color] of [['v1', SHOP_V1, 'blue'], ['v2', SHOP_V2, 'green']] as const) {
      const d = await cli(['deploy', v, '--path', p], { cwd: ctl.dir });
      assert.equal(d.code, 0, d.stdout + d.stderr + agent1.output().slice(-3000));
      assert.match(d.stdout, /acknowledged by 1\/1 router\(s\)/);
      const s = await status();
      assert.equal(s.live?.color, color);
      assert.equal(s.live?.version, v);
      assert.equal(s.environments[color].healthy, 2);
      const env = s.environments[color];
      assert.deepEqual(env.instances.map((i) => i.id), [`${color}-0`, `${color}-1`]);
      // Instance 0 on a1, instance 1 on a2 (index i on agent i mod 2): their pids carry each agent's mark.
      assert.ok(pidsOn(agentDirs[0]).has(env.instances[0].pid), `${color}-0 runs under a1`);
      assert.ok(pidsOn(agentDirs[1]).has(env.instances[1].pid), `${color}-1 runs under a2`);
    }
    const s = await status();
    assert.equal(s.environments.blue.role, 'standby');
    assert.equal(s.environments.blue.healthy, 2, 'the standby keeps running on both agents');
  });

  load = keepAliveLoad(`http://127.0.0.1:${r0.ports.live}`, { connections: 8 });
  await waitFor(() => load!.count.ok > 300, { what: 'load through the router', timeoutMs: 20_000 });

  await t.test('kill -9 of agent a1 and its instances: traffic continues on a2\'s, 0 failed after the drop', async () => {
    const before = await status();
    const green = before.environments.green.instances;
    const failedBefore = load!.count.failed;
    const okBefore = load!.count.ok;
    agent1.child.kill('SIGKILL');
    killAll([...pidsOn(agentDirs[0])]);
    const killedAt = Date.now();
    // The lease (2s) expires: the controller counts green-0 unhealthy and publishes a table without it.
    const dropped = await waitFor(async () => {
      const s = await status();
      const g0 = s.environments.green.instances.find((i) => i.id === 'green-0');
      const acked = s.routers.every((r) => r.revision === s.router.revision && !r.stale);
      return g0 && !g0.healthy && s.router.revision > before.router.revision && acked ? s : null;
    }, { what: 'green-0 unhealthy and a table without it acknowledged', timeoutMs: 30_000, intervalMs: 200 });
    const dropMs = Date.now() - killedAt;
    const failedInWindow = load!.count.failed - failedBefore;
    t.diagnostic(`drop window ${dropMs}ms (lease 2s): ${failedInWindow} failed of ${load!.count.ok - okBefore + failedInWindow} requests in it (${JSON.stringify(load!.count.byKind)})`);
    assert.equal(dropped.live?.color, 'green');
    assert.deepEqual(dropped.environments.green.instances.map((i) => [i.id, i.healthy]), [['green-0', false], ['green-1', true]], 'a1\'s instance shown, unhealthy');
    assert.equal(dropped.environments.green.healthy, 1);
    assert.deepEqual(dropped.agents.map((a) => [a.id, a.registered, a.instances.length]), [['a1', false, 0], ['a2', true, 2]], 'status --json: a1 is not registered');
    assert.equal(dropped.environments.blue.instances.find((i) => i.id === 'blue-0')?.healthy, false, 'the standby\'s a1 instance too');
    assert.equal(green[1].pid, dropped.environments.green.instances[1].pid, 'a2\'s instance untouched');
    assert.match(await eventText(ctl.ports.admin, /instance green-0 \(pid \d+\) is down: its agent a1 is gone/), /lease expired/);
    // After the drop: every request answered, by a2's green instance.
    const failedAfterDrop = load!.count.failed;
    const ok0 = load!.count.ok;
    const versions0 = { ...load!.count.versions };
    await waitFor(() => load!.count.ok > ok0 + 1_000, { what: '1000 more requests', timeoutMs: 60_000 });
    assert.equal(load!.count.failed - failedAfterDrop, 0, JSON.stringify(load!.count.byKind));
    assert.deepEqual(Object.keys(load!.count.versions).filter((v) => load!.count.versions[v] !== versions0[v]), ['v2@green']);
  });

  await t.test('agent a1 started again runs its share again from the desired state', async () => {
    const failed0 = load!.count.failed;
    agent1 = await startAgent(a1.dir, 'a1');
    const s = await waitFor(async () => {
      const x = await status();
      return x.environments.green.healthy === 2 && x.environments.blue.healthy === 2 && x.routers.every((r) => r.revision === x.router.revision) ? x : null;
    }, { what: 'a1\'s instances back and healthy', timeoutMs: 30_000, intervalMs: 200 });
    assert.ok(pidsOn(agentDirs[0]).has(s.environments.green.instances[0].pid), 'green-0 runs under the new a1');
    assert.equal(load!.count.failed - failed0, 0, JSON.stringify(load!.count.byKind));
  });

  await t.test('agent a2 killed alone and started again adopts its running instances (same pids)', async () => {
    const before = await status();
    const failed0 = load!.count.failed;
    const pids = [before.environments.green.instances[1].pid, before.environments.blue.instances[1].pid];
    agent2.child.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(pids.every(alive), 'its instances outlive it');
    agent2 = await startAgent(a2.dir, 'a2');
    await waitFor(() => /adopted running instances/.test(agent2.output()), { what: 'a2 adopts', timeoutMs: 20_000 });
    // Longer than the lease: the controller never saw a2 go (the new session took the keys over) or saw it come back.
    await new Promise((r) => setTimeout(r, 2_500));
    const s = await waitFor(async () => { const x = await status(); return x.environments.green.healthy === 2 ? x : null; }, { what: 'both green healthy', timeoutMs: 20_000 });
    assert.deepEqual([s.environments.green.instances[1].pid, s.environments.blue.instances[1].pid], pids);
    assert.equal(load!.count.failed - failed0, 0, JSON.stringify(load!.count.byKind));
  });

  await t.test('kill -9 of the controller: the next one adopts the agents\' instances (same pids), traffic never stops', async () => {
    const before = await status();
    const failed0 = load!.count.failed;
    const pids = (x: Status) => [...x.environments.blue.instances, ...x.environments.green.instances].map((i) => [i.id, i.pid]);
    await daemon!.stop('SIGKILL');
    daemon = await startDaemonProcess(ctl.dir);
    const s = await waitFor(async () => { const x = await status(); return x.environments.green.healthy === 2 && x.environments.blue.healthy === 2 ? x : null; }, { what: 'both colours healthy after the restart', timeoutMs: 20_000 });
    assert.deepEqual(pids(s), pids(before));
    assert.equal(s.live?.color, 'green');
    assert.equal(load!.count.failed - failed0, 0, JSON.stringify(load!.count.byKind));
  });

  await t.test('a release that crashes on an agent fails the deploy quoting its exit code and last log line; live untouched', async () => {
    const failed0 = load!.count.failed;
    const d = await cli(['deploy', 'v3', '--path', path.join(FIXTURES, 'crash-on-start')], { cwd: ctl.dir });
    assert.equal(d.code, 1, d.stdout + d.stderr);
    assert.match(d.stdout + d.stderr, /blue-\d.* exited with code 3 .*last log line: "fatal: cannot start" \(log: a[12]:\/.*\/agents\/a[12]\/logs\/blue-\d\.log\)/);
    const s = await status();
    assert.equal(s.live?.color, 'green');
    assert.equal(s.environments.green.healthy, 2);
    await waitFor(() => [...pidsOn(agentDirs[0]), ...pidsOn(agentDirs[1])].length === 2, { what: 'the failed candidate stopped on both agents', timeoutMs: 20_000 });
    assert.equal(load!.count.failed - failed0, 0, JSON.stringify(load!.count.byKind));
    const total = await load!.stop();
    t.diagnostic(`load: ${total.ok} ok, ${total.failed} failed in all`);
  });
});

test('every desired-state write is one transaction that the fence hook can refuse; nothing is written then', { timeout: 60_000 }, async (t) => {
  const etcd = await startEtcdCluster(1);
  const { Etcd3 } = await import('etcd3');
  const { AgentProvider } = await import('../src/fleet/agent-provider.ts');
  const { silentLogger } = await import('../src/lib/logger.ts');
  const client = new Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
  const prefix = `/cutover-fence-${process.pid}`;
  const fleet = { etcd: { endpoints: etcd.endpoints, prefix }, leaseTtl: 2_000, ackTimeout: 1_000 };
  const leader = `${prefix}/shop/leader`;
  const providers: { detach: () => Promise<void> }[] = [];
  t.after(async () => { for (const p of providers) await p.detach(); client.close(); await etcd.stop(); });
  const make = () => {
    // A fence like the one leader election will give: "the leader key exists".
    const p = new AgentProvider({ app: 'shop', fleet, hosts: ['a1'], instances: 1, startTimeoutMs: 1_000, stopTimeoutMs: 1_000, logger: silentLogger, fence: (txn) => txn.and(leader, 'Version', '>', 0) });
    providers.push(p);
    return p;
  };
  const p = make();
  const wish = new Map([['a1', { colors: { blue: { version: 'v1', path: '/srv/v1', slots: [0], restart: true, gen: 1 } } }]]);
  await assert.rejects(p.write(wish), (err: Error & { code?: string }) => err.code === 'CUTOVER_ERR_CONFLICT');
  assert.equal(await client.get(`${prefix}/shop/desired/default/a1`).string(), null, 'a refused write changes nothing');
  await client.put(leader).value('c1');
  await p.write(wish);
  assert.deepEqual(JSON.parse((await client.get(`${prefix}/shop/desired/default/a1`).string())!), wish.get('a1'));
});

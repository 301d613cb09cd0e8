/**
 * Several controllers, one leader (issue 11), against a real 3-member etcd on loopback: three
 * `cutover up --id` controllers and two fleet routers under keep-alive load. A follower names the
 * leader and forwards writes; a leader paused with SIGSTOP loses the lead within the lease, and
 * once woken (SIGCONT) writes nothing — the route table, the state and the leader key are as the
 * new leader left them — and steps down (exits, for its supervisor to start it as a follower).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TEST_TOKEN, cli, waitFor } from './helpers.ts';
import { keepAliveLoad, type LoadCount } from './load.ts';
import { controllerKeys, startControllerFleet, type ControllerFleet } from './support/controllers.ts';

interface Ack { revision: number; acknowledged: string[]; missing: string[] }

test('three controllers: one leader, followers forward, a SIGSTOPped leader writes nothing once woken', { timeout: 240_000 }, async (t) => {
  let f: ControllerFleet | null = null;
  const loads: { stop: () => Promise<LoadCount>; count: LoadCount }[] = [];
  t.after(async () => {
    for (const l of loads) await l.stop().catch(() => {});
    await f?.stop();
  });
  f = await startControllerFleet({ routers: 2, leaseTtl: '2s' });
  const fleet = f;
  await fleet.startController('c1');
  assert.equal(await fleet.waitLeader(), 'c1', 'the first controller leads');
  await fleet.startController('c2');
  await fleet.startController('c3');
  assert.equal(await fleet.waitLeader(), 'c1');
  await waitFor(async () => (await fleet.status('c1')).routers.length === 2, { what: 'two routers registered' });

  await t.test('a follower names the leader and the controllers, and forwards a deploy', async () => {
    const s = await fleet.status('c2');
    assert.equal(s.leader?.id, 'c1');
    assert.equal(s.leader?.admin, fleet.controllers.get('c1')!.adminUrl);
    assert.deepEqual(s.controllers?.map((c) => [c.id, c.leader, c.self]), [['c1', true, false], ['c2', false, true], ['c3', false, false]]);
    for (const v of ['v1', 'v2']) {
      // Through the CLI against a follower: the write is forwarded, the answer and the event stream are the follower's.
      const d = await cli(['deploy', v], { cwd: fleet.controllers.get('c2')!.dir });
      assert.equal(d.code, 0, d.stdout + d.stderr);
      assert.match(d.stdout, /acknowledged by 2\/2 router\(s\)/);
    }
    // Every follower's copy of the state is current.
    for (const id of ['c2', 'c3']) await waitFor(async () => (await fleet.status(id)).live?.version === 'v2', { what: `${id} sees v2 live` });
    // A follower checks the recorded instances itself: its status tells their health too.
    await waitFor(async () => ((await fleet.status('c3')) as unknown as { live: { healthy: number } | null }).live?.healthy === 1, { what: 'c3 sees the live instance healthy' });
    const human = await cli(['status'], { cwd: fleet.controllers.get('c3')!.dir });
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /controllers: c1 \(leader\), c2, c3 \(this one\); leader c1 at http:\/\/127\.0\.0\.1:\d+/);
    const h = await fleet.api<{ deployments: { version: string; status: string }[] }>('c3', 'GET', '/history');
    assert.deepEqual(h.body.deployments.map((d) => [d.version, d.status]), [['v2', 'succeeded'], ['v1', 'succeeded']]);
  });

  for (const r of fleet.routers) loads.push(keepAliveLoad(r.liveUrl, { connections: 4 }));
  await waitFor(() => loads.every((l) => l.count.ok > 50), { what: 'load through both routers' });

  await t.test('a follower forwards a rollback; the routers acknowledge it', async () => {
    const r = await cli(['rollback', '--json'], { cwd: fleet.controllers.get('c3')!.dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const ack = (JSON.parse(r.stdout) as { ack: Ack }).ack;
    assert.deepEqual(ack.missing, []);
    assert.deepEqual([...ack.acknowledged].sort(), ['r0', 'r1']);
    const s = await fleet.status('c1');
    assert.equal(s.live?.version, 'v1');
  });

  await t.test('a write to a controller that is not the leader never runs there: forwarded, named in the answer', async () => {
    const res = await fetch(`${fleet.controllers.get('c2')!.adminUrl}/api/v1/rollback`, { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-cutover-leader'), fleet.controllers.get('c1')!.adminUrl);
    await res.json();
    const wrong = await fetch(`${fleet.controllers.get('c2')!.adminUrl}/api/v1/rollback`, { method: 'POST', headers: { authorization: 'Bearer wrong-token-0123456789' } });
    assert.equal(wrong.status, 401, 'the follower checks the token (its hash is in etcd) before forwarding');
  });

  await t.test('SIGSTOP of the leader: another leads within leaseTtl + 2 s; woken, the old leader writes nothing and steps down', async () => {
    const c1 = fleet.controllers.get('c1')!;
    process.kill(c1.child.pid!, 'SIGSTOP');
    const stoppedAt = Date.now();
    const next = await fleet.waitLeader({ not: 'c1', timeoutMs: 15_000 });
    const ms = Date.now() - stoppedAt;
    t.diagnostic(`SIGSTOP of c1 → ${next} leads in ${ms} ms (leaseTtl 2 s)`);
    assert.ok(ms < 4_000 + 1_000, `a new leader within leaseTtl + 2 s (+1 s of polling and status calls): ${ms} ms`);
    // The new leader moves traffic: the paused one's view of the table is now stale.
    const r = await fleet.api<{ ack: Ack }>(next, 'POST', '/rollback', {});
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.ack.missing, []);
    const before = await controllerKeys(fleet.kv(), fleet.prefix);
    process.kill(c1.child.pid!, 'SIGCONT');
    const exit = await Promise.race([c1.exited, new Promise<null>((res) => setTimeout(() => res(null), 10_000))]);
    assert.ok(exit, `the woken leader steps down and exits: ${c1.output().slice(-3000)}`);
    assert.equal(exit.code, 1);
    assert.match(c1.output(), /stepped down|lost the lead/);
    const after = await controllerKeys(fleet.kv(), fleet.prefix);
    assert.deepEqual([...after].sort(), [...before].sort(), 'route table, state, leader key: not one key written by the woken leader');
    // The routers' request records follow the leader key: they reach the new leader (analysis, metrics there).
    await waitFor(async () => {
      const st = await fleet.api<{ colors: Record<string, { requests: number }[]> }>(next, 'GET', '/stats?minutes=1&step=1s');
      return Object.values(st.body.colors).flat().reduce((a, p) => a + p.requests, 0) > 100;
    }, { what: `request records from the routers at ${next}` });
    const s = await fleet.status(next);
    assert.equal(s.leader?.id, next);
    assert.equal(s.live?.version, 'v1', 'the new leader\'s rollback stands');
    // Started again, it follows.
    await fleet.startController('c1');
    assert.equal(await fleet.waitLeader(), next);
    const st = await fleet.status('c1');
    assert.equal(st.controllers?.find((c) => c.self)?.leader, false);
    const h = await fleet.api<{ deployments: unknown[] }>('c1', 'GET', '/history');
    assert.equal(h.body.deployments.length, 2);
  });

  await t.test('SIGTERM of the leader: it hands over at once (its leader key is deleted), what it recorded is kept', async () => {
    const leader = await fleet.waitLeader();
    const c = fleet.controllers.get(leader)!;
    const before = (await fleet.api<{ deployments: unknown[] }>(leader, 'GET', '/history')).body.deployments.length;
    const t0 = Date.now();
    c.child.kill('SIGTERM');
    const exit = await c.exited;
    assert.equal(exit.code, 0, c.output().slice(-2000));
    const next = await fleet.waitLeader({ not: leader });
    t.diagnostic(`SIGTERM of ${leader} → ${next} leads in ${Date.now() - t0} ms (no lease wait)`);
    const st = await fleet.status(next);
    assert.equal(st.live?.version, 'v1');
    assert.equal((await fleet.api<{ deployments: unknown[] }>(next, 'GET', '/history')).body.deployments.length, before);
    const r = await fleet.api<{ ack: Ack }>(next, 'POST', '/rollback', {});
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });

  const counts = await Promise.all(loads.splice(0).map((l) => l.stop()));
  assert.equal(counts.reduce((n, c) => n + c.failed, 0), 0, JSON.stringify(counts.map((c) => c.byKind)));
  t.diagnostic(`${counts.reduce((n, c) => n + c.requests, 0)} requests through 2 routers, 0 failed`);
});

/**
 * One contract for every Store (store/types.ts), run against SQLite (the one-machine default) and
 * against etcd (a fleet of controllers; a real 3-member cluster on loopback): what a commit
 * writes is read back the same, atomically, after a reopen too; events keep their order and
 * filters; the held standby comes and goes. Then what only etcd has: bounded event retention,
 * `lastEventSeq` monotonic across leaders, and a deposed leader's commits refused and never written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import { EtcdStore } from '../src/store/etcd-store.ts';
import { Leadership } from '../src/fleet/leadership.ts';
import { fleetKeys } from '../src/fleet/keys.ts';
import { silentLogger } from '../src/lib/logger.ts';
import type { DeploymentRecord, Store } from '../src/store/types.ts';
import type { Instance } from '../src/environments/types.ts';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.ts';
import { tempDir, waitFor } from './helpers.ts';

interface Harness {
  name: string;
  /** A fresh, empty store. */
  open: () => Promise<Store>;
  /** The same state, read again by a new store instance (a restarted daemon, a new leader). */
  reopen: (s: Store) => Promise<Store>;
  close: () => Promise<void>;
}

function deployment(id: string, createdAt: number, status: DeploymentRecord['status'] = 'running'): DeploymentRecord {
  return {
    id, version: `v-${id}`, path: null, color: 'green', fromColor: 'blue', fromVersion: 'v0', status, phase: 'provision', manual: false, actor: 'test',
    createdAt, updatedAt: createdAt, finishedAt: null, error: null, gates: null, forced: false, switchMs: null,
  };
}

const inst = (color: 'blue' | 'green', index: number): Instance => ({ id: `${color}-${index}`, color, index, version: 'v1', host: '127.0.0.1', port: 9000 + index, pid: null, path: null, startedAt: 1 });

function sqliteHarness(): Harness {
  const dirs: { cleanup: () => void }[] = [];
  const open: SqliteStore[] = [];
  return {
    name: 'sqlite',
    open: async () => { const t = tempDir('cutover-store-'); dirs.push(t); const s = new SqliteStore(t.dir); open.push(s); return s; },
    reopen: async (s) => { const dir = (s as SqliteStore).file.replace(/\/state\.db$/, ''); s.close(); const n = new SqliteStore(dir); open.push(n); return n; },
    close: async () => { for (const s of open) s.close(); for (const d of dirs) d.cleanup(); },
  };
}

async function etcdHarness(cluster: EtcdCluster): Promise<Harness> {
  const clients: Etcd3[] = [];
  const leaders: Leadership[] = [];
  let n = 0;
  const lead = async (prefix: string, id: string) => {
    const client = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
    clients.push(client);
    const keys = fleetKeys(prefix, 'shop');
    const l = new Leadership({ client, keys, id, admin: 'http://127.0.0.1:1', leaseTtlMs: 2_000, logger: silentLogger, endpoints: cluster.endpoints });
    leaders.push(l);
    await l.start();
    await waitFor(() => l.isLeader(), { what: `${id} to lead` });
    const s = new EtcdStore({ client, keys, leadership: l, logger: silentLogger, endpoints: cluster.endpoints });
    await s.load();
    return { s, l, client, keys };
  };
  const prefixOf = new Map<Store, { prefix: string; l: Leadership }>();
  return {
    name: 'etcd',
    open: async () => {
      const prefix = `/contract-${process.pid}-${++n}`;
      const { s, l } = await lead(prefix, 'a');
      prefixOf.set(s, { prefix, l });
      return s;
    },
    reopen: async (s) => {
      // Another controller takes the lead and reads the state: everything committed must be there.
      const { prefix, l } = prefixOf.get(s)!;
      await s.flush();
      await l.close();
      const next = await lead(prefix, 'b');
      prefixOf.set(next.s, { prefix, l: next.l });
      return next.s;
    },
    close: async () => { for (const l of leaders) await l.close().catch(() => {}); for (const c of clients) c.close(); },
  };
}

test('the Store contract, on SQLite and on etcd', { timeout: 120_000 }, async (t) => {
  const cluster = await startEtcdCluster(3);
  const harnesses = [sqliteHarness(), await etcdHarness(cluster)];
  t.after(async () => {
    for (const h of harnesses) await h.close();
    await cluster.stop();
  });
  for (const h of harnesses) {
    await t.test(`${h.name}: a fresh store: both colours empty, no deployment, no event`, async () => {
      const s = await h.open();
      const envs = s.environments();
      assert.deepEqual([envs.blue.role, envs.green.role], ['empty', 'empty']);
      assert.equal(s.activeDeployment(), null);
      assert.deepEqual(s.deployments(), []);
      assert.deepEqual(s.events(), []);
      assert.equal(s.lastEventSeq(), 0);
      assert.equal(s.heldStandby(), null);
      assert.deepEqual(s.instances('blue'), []);
    });

    await t.test(`${h.name}: one commit writes roles, instances, a deployment and events together; a reopen reads the same`, async () => {
      let s = await h.open();
      const d = deployment('d1', 1_000);
      const stored = s.commit({
        environments: [{ color: 'blue', role: 'live', version: 'v1', path: null, since: 5, retireAt: null }, { color: 'green', role: 'candidate', version: 'v2', path: '/r/v2', since: 6, retireAt: null }],
        instances: [{ color: 'blue', instances: [inst('blue', 0), inst('blue', 1)] }],
        deployment: d,
        events: [{ type: 'deployment.started', deployment: 'd1', actor: 'test', reason: 'start' }, { type: 'phase', deployment: 'd1', phase: 'provision', actor: 'test', reason: 'p', durationMs: 3, color: 'green', version: 'v2', data: { n: 1 } }],
      });
      assert.deepEqual(stored.map((e) => e.seq), [1, 2]);
      await s.flush();
      s = await h.reopen(s);
      assert.equal(s.environments().blue.role, 'live');
      assert.deepEqual(s.environments().green, { color: 'green', role: 'candidate', version: 'v2', path: '/r/v2', since: 6, retireAt: null });
      assert.deepEqual(s.instances('blue').map((i) => i.id), ['blue-0', 'blue-1']);
      assert.deepEqual(s.instances('green'), []);
      assert.deepEqual(s.activeDeployment(), d);
      assert.deepEqual(s.deployment('d1'), d);
      assert.equal(s.deployment('nope'), null);
      const ev = s.events();
      assert.deepEqual(ev.map((e) => [e.seq, e.type]), [[1, 'deployment.started'], [2, 'phase']]);
      assert.deepEqual(ev[1], { ...stored[1] });
      assert.equal(ev[1].data?.n, 1);
      assert.equal(s.lastEventSeq(), 2);
    });

    await t.test(`${h.name}: deployments newest first, limit and since; finished ones are not active`, async () => {
      const s = await h.open();
      s.commit({ deployment: deployment('a', 100, 'succeeded') });
      s.commit({ deployment: deployment('b', 200, 'failed') });
      s.commit({ deployment: deployment('c', 300, 'running') });
      s.commit({ deployment: { ...deployment('c', 300, 'succeeded'), phase: 'stable' } });
      assert.deepEqual(s.deployments().map((d) => d.id), ['c', 'b', 'a']);
      assert.deepEqual(s.deployments({ limit: 2 }).map((d) => d.id), ['c', 'b']);
      assert.deepEqual(s.deployments({ since: 200 }).map((d) => d.id), ['c', 'b']);
      assert.equal(s.deployment('c')?.phase, 'stable');
      assert.equal(s.activeDeployment(), null);
      const again = await h.reopen(s);
      assert.deepEqual(again.deployments().map((d) => [d.id, d.status]), [['c', 'succeeded'], ['b', 'failed'], ['a', 'succeeded']]);
    });

    await t.test(`${h.name}: events filtered by deployment, afterSeq and limit, in seq order`, async () => {
      const s = await h.open();
      for (let i = 0; i < 10; i++) s.commit({ events: [{ type: 'x', deployment: i % 2 === 0 ? 'even' : 'odd', actor: 't', reason: `r${i}` }] });
      assert.deepEqual(s.events({ deployment: 'odd' }).map((e) => e.reason), ['r1', 'r3', 'r5', 'r7', 'r9']);
      assert.deepEqual(s.events({ afterSeq: 7 }).map((e) => e.seq), [8, 9, 10]);
      assert.deepEqual(s.events({ limit: 3 }).map((e) => e.seq), [1, 2, 3]);
      assert.deepEqual(s.events({ deployment: 'even', afterSeq: 4, limit: 2 }).map((e) => e.seq), [5, 7]);
      const again = await h.reopen(s);
      assert.equal(again.lastEventSeq(), 10);
      assert.deepEqual(again.events({ deployment: 'odd', afterSeq: 5 }).map((e) => e.seq), [6, 8, 10]);
    });

    await t.test(`${h.name}: the held standby is set and cleared; instances of a colour are replaced whole`, async () => {
      let s = await h.open();
      const held = { deployment: 'd', env: { color: 'green' as const, role: 'standby' as const, version: 'v1', path: null, since: 1, retireAt: 9 }, instances: [inst('green', 0)] };
      s.commit({ held, instances: [{ color: 'green', instances: [inst('green', 0), inst('green', 1)] }] });
      s = await h.reopen(s);
      assert.deepEqual(s.heldStandby(), held);
      s.commit({ held: null, instances: [{ color: 'green', instances: [inst('green', 3)] }] });
      s.commit({ events: [{ type: 'unrelated', actor: 't', reason: 'held stays as it is' }] });
      s = await h.reopen(s);
      assert.equal(s.heldStandby(), null);
      assert.deepEqual(s.instances('green').map((i) => i.id), ['green-3']);
    });

    await t.test(`${h.name}: what a read returns is a copy: changing it changes nothing stored`, async () => {
      const s = await h.open();
      s.commit({ deployment: deployment('m', 1) });
      const d = s.deployment('m')!;
      d.status = 'failed';
      s.environments().blue.role = 'live';
      assert.equal(s.deployment('m')!.status, 'running');
      assert.equal(s.environments().blue.role, 'empty');
    });
  }

  await t.test('etcd only: events are kept bounded (newest N), lastEventSeq goes on across leaders', async () => {
    const client = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
    const prefix = `/contract-retention-${process.pid}`;
    const keys = fleetKeys(prefix, 'shop');
    try {
      const open = async (id: string) => {
        const l = new Leadership({ client, keys, id, admin: 'http://x:1', leaseTtlMs: 2_000, logger: silentLogger, endpoints: cluster.endpoints });
        await l.start();
        await waitFor(() => l.isLeader(), { what: `${id} leads` });
        const s = new EtcdStore({ client, keys, leadership: l, logger: silentLogger, endpoints: cluster.endpoints, eventsKept: 5 });
        await s.load();
        return { l, s };
      };
      const a = await open('a');
      for (let i = 1; i <= 12; i++) a.s.commit({ events: [{ type: 'e', actor: 't', reason: `${i}` }] });
      await a.s.flush();
      const inEtcd = await client.getAll().prefix(`${keys.statePrefix}events/`).keys();
      assert.equal(inEtcd.length, 5, 'only the newest 5 events are in etcd');
      assert.deepEqual(a.s.events().map((e) => e.seq), [8, 9, 10, 11, 12]);
      await a.l.close();
      const b = await open('b');
      assert.equal(b.s.lastEventSeq(), 12);
      assert.deepEqual(b.s.commit({ events: [{ type: 'e', actor: 't', reason: 'by b' }] }).map((e) => e.seq), [13]);
      await b.s.flush();
      await b.l.close();
    } finally {
      client.close();
    }
  });

  await t.test('etcd only: a deposed leader commits nothing — refused at once, or fenced by etcd if it still believes it leads', async () => {
    const client = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
    const prefix = `/contract-fence-${process.pid}`;
    const keys = fleetKeys(prefix, 'shop');
    let la!: Leadership;
    let lb: Leadership | undefined;
    try {
      la = new Leadership({ client, keys, id: 'a', admin: 'http://x:1', leaseTtlMs: 2_000, logger: silentLogger, endpoints: cluster.endpoints });
      await la.start();
      await waitFor(() => la.isLeader(), { what: 'a leads' });
      const sa = new EtcdStore({ client, keys, leadership: la, logger: silentLogger, endpoints: cluster.endpoints });
      await sa.load();
      sa.commit({ events: [{ type: 'e', actor: 'a', reason: 'while leading' }] });
      await sa.flush();
      // Another takes the key while `a` still believes it leads (as after a pause): delete and re-create it.
      const deposed = new Promise<string>((resolve) => la.once('deposed', resolve));
      await client.delete().key(keys.leader).exec();
      lb = new Leadership({ client, keys, id: 'b', admin: 'http://x:2', leaseTtlMs: 2_000, logger: silentLogger, endpoints: cluster.endpoints });
      await lb.start();
      await waitFor(() => lb!.isLeader(), { what: 'b leads' });
      await deposed;
      assert.equal(la.isLeader(), false);
      await waitFor(() => la.leader()?.id === 'b', { what: 'a to learn that b leads' });
      assert.throws(() => sa.commit({ events: [{ type: 'e', actor: 'a', reason: 'after' }] }), (e: Error & { code?: string }) => e.code === 'CUTOVER_ERR_NOT_LEADER' && /the leader is b/.test(e.message));
      const sb = new EtcdStore({ client, keys, leadership: lb!, logger: silentLogger, endpoints: cluster.endpoints });
      await sb.load();
      assert.deepEqual(sb.events().map((e) => e.reason), ['while leading']);
      // The fence itself, without the local check: a transaction with a's old create revision is refused by etcd.
      const stale = await client.if(keys.leader, 'Create', '==', '1').then(client.put(`${keys.statePrefix}seq`).value('999')).commit();
      assert.equal(stale.succeeded, false);
    } finally {
      await lb?.close().catch(() => {});
      await la.close().catch(() => {});
      client.close();
    }
  });
});

/**
 * A real etcd cluster for tests: N members of the Debian `etcd` binary (3.4) on free loopback
 * ports with temporary data dirs. Members can be stopped and started again (same data); `stop()`
 * ends every member and removes the data — call it from t.after so it runs when a test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { freePort, waitFor } from './helpers.ts';

export const ETCD_BIN = process.env.CUTOVER_TEST_ETCD ?? '/usr/bin/etcd';

interface Member { name: string; clientPort: number; peerPort: number; dataDir: string; proc: ChildProcess | null; log: string }

export interface EtcdCluster {
  endpoints: string[];
  members: readonly Member[];
  stopMember: (i: number) => Promise<void>;
  startMember: (i: number) => void;
  /** Resolves once a write through any running member succeeds (a leader exists). */
  waitWritable: (timeoutMs?: number) => Promise<void>;
  stop: () => Promise<void>;
}

export async function startEtcdCluster(n = 3): Promise<EtcdCluster> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'cutover-etcd-'));
  const members: Member[] = [];
  for (let i = 0; i < n; i++) {
    members.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort(), dataDir: path.join(root, `m${i}`), proc: null, log: '' });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  const startMember = (i: number) => {
    const m = members[i];
    if (m.proc) return;
    m.proc = spawn(ETCD_BIN, [
      '--name', m.name, '--data-dir', m.dataDir,
      '--listen-client-urls', `http://127.0.0.1:${m.clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster', initialCluster, '--initial-cluster-token', path.basename(root), '--initial-cluster-state', 'new',
      // Short elections: a stopped leader is replaced within a second (defaults: 100 ms / 1 s).
      '--heartbeat-interval', '100', '--election-timeout', '1000',
      '--log-level', 'warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    m.proc.stderr!.on('data', (d: Buffer) => { m.log = (m.log + d.toString()).slice(-4000); });
    m.proc.once('exit', () => { m.proc = null; });
  };
  const stopMember = async (i: number) => {
    const p = members[i].proc;
    if (!p) return;
    await new Promise<void>((resolve) => { p.once('exit', () => resolve()); p.kill('SIGKILL'); });
    members[i].proc = null;
  };
  const endpoints = members.map((m) => `127.0.0.1:${m.clientPort}`);
  const waitWritable = async (timeoutMs = 20_000) => {
    const running = members.filter((m) => m.proc).map((m) => `http://127.0.0.1:${m.clientPort}`);
    const c = new Etcd3({ hosts: running, dialTimeout: 1_000, defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 1_000 }) });
    try {
      await waitFor(() => c.put('/cutover-test/ping').value(String(Date.now())).exec().then(() => true, () => false), { what: `etcd to accept writes: ${members.map((m) => m.log).join('\n')}`, timeoutMs, intervalMs: 200 });
    } finally {
      c.close();
    }
  };
  for (let i = 0; i < n; i++) startMember(i);
  const cluster: EtcdCluster = {
    endpoints, members, stopMember, startMember, waitWritable,
    stop: async () => {
      await Promise.all(members.map((_, i) => stopMember(i)));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    await waitWritable();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

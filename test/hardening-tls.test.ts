/**
 * TLS on the router's live listener and on the admin API (issue #6): certificates generated at
 * test time with openssl (never committed), reloaded on SIGHUP without dropping an open keep-alive
 * connection; new handshakes see the new certificate; a bad pair is refused and the old one stays.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Router } from '../src/router/router.ts';
import { routes, TestHealth } from './support/router.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { Daemon } from '../src/daemon/daemon.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { cli, freePort, freePorts, get, serveShop, staticConfigYaml, tempDir, TEST_TOKEN, waitFor, waitForHealth } from './helpers.ts';

/** A self-signed certificate for 127.0.0.1/localhost with common name `cn` (P-256: quick to make). */
function makeCert(dir: string, cn: string): { cert: string; key: string } {
  const cert = path.join(dir, `${cn}.crt`);
  const key = path.join(dir, `${cn}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  return { cert, key };
}

/** A TLS connection that trusts `ca` and speaks HTTP/1.1 keep-alive by hand, one request at a time. */
async function tlsClient(port: number, ca: string[]): Promise<{ socket: TLSSocket; cn: () => string; get: (p: string) => Promise<{ status: number; body: string }>; close: () => void }> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject); });
  let buf = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => { buf += d; });
  return {
    socket,
    cn: () => String(socket.getPeerCertificate().subject.CN),
    get: async (p) => {
      buf = '';
      socket.write(`GET ${p} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      await waitFor(() => {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return false;
        const head = buf.slice(0, end);
        if (/\r\ntransfer-encoding: chunked/i.test(head)) return buf.endsWith('\r\n0\r\n\r\n');
        const m = /\r\ncontent-length: (\d+)/i.exec(head);
        return m !== null && buf.length - (end + 4) >= Number(m[1]);
      }, { what: 'a whole response', timeoutMs: 5_000 });
      return { status: Number(buf.slice(9, 12)), body: buf.slice(buf.indexOf('\r\n\r\n') + 4) };
    },
    close: () => socket.destroy(),
  };
}

async function peerCn(port: number, ca: string[]): Promise<string> {
  const c = await tlsClient(port, ca);
  const cn = c.cn();
  c.close();
  return cn;
}

test('router.tls: HTTPS on the live listener, X-Forwarded-Proto https; a reload keeps open connections and new handshakes get the new certificate', async () => {
  const { dir, cleanup } = tempDir();
  const a = makeCert(dir, 'router-a');
  const b = makeCert(dir, 'router-b');
  const live = { cert: path.join(dir, 'live.crt'), key: path.join(dir, 'live.key') };
  copyFileSync(a.cert, live.cert);
  copyFileSync(a.key, live.key);
  const ca = [a, b].map((c) => execFileSync('cat', [c.cert]).toString());
  const up = createServer((req: IncomingMessage, res: ServerResponse) => res.end(JSON.stringify({ proto: req.headers['x-forwarded-proto'] })));
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const router = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: { host: '127.0.0.1', port: 0 }, drainTimeoutMs: 1_000, health: new TestHealth(), logger: silentLogger, tls: live });
  try {
    await router.start();
    router.swap(routes({ color: 'blue', targets: [{ id: 'blue-0', host: '127.0.0.1', port: (up.address() as AddressInfo).port }] }));
    const port = router.addresses().live.port;
    const kept = await tlsClient(port, ca);
    assert.equal(kept.cn(), 'router-a');
    assert.deepEqual(await kept.get('/'), { status: 200, body: '{"proto":"https"}' });
    // The preview listener stays plain HTTP (internal; gates use it).
    assert.equal((await get(`http://127.0.0.1:${router.addresses().preview!.port}/`)).status, 503);

    copyFileSync(b.cert, live.cert);
    copyFileSync(b.key, live.key);
    assert.equal(router.reloadTls(), true);
    assert.equal(await peerCn(port, ca), 'router-b', 'a new handshake sees the new certificate');
    assert.deepEqual(await kept.get('/'), { status: 200, body: '{"proto":"https"}' }, 'the open keep-alive connection survived the reload');
    assert.equal(kept.cn(), 'router-a');

    // A mismatched pair (b's certificate, a's key) is refused; b stays in use.
    copyFileSync(a.key, live.key);
    assert.throws(() => router.reloadTls(), (e: Error & { code?: string }) => e.code === 'CUTOVER_ERR_CONFIG' && /not a usable certificate and key/.test(e.message) && !e.message.includes('PRIVATE KEY'));
    assert.equal(await peerCn(port, ca), 'router-b');
    kept.close();
  } finally {
    await router.close();
    up.close();
    cleanup();
  }
});

test('admin.tls and router.tls through the daemon: the CLI trusts the configured certificate; SIGHUP reloads both without dropping a connection, and says so in events', async () => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  const a = makeCert(dir, 'cutover-a');
  const b = makeCert(dir, 'cutover-b');
  copyFileSync(a.cert, path.join(dir, 'tls.crt'));
  copyFileSync(a.key, path.join(dir, 'tls.key'));
  const ca = [a, b].map((c) => execFileSync('cat', [c.cert]).toString());
  const blue = await freePort();
  const green = await freePort();
  const children: ChildProcess[] = [blue, green].map((p, i) => serveShop(p, i === 0 ? 'blue' : 'green'));
  const tls = 'tls: { cert: tls.crt, key: tls.key }';
  writeFileSync(path.join(dir, 'cutover.yaml'), staticConfigYaml(ports, blue, green, { router: tls, admin: tls }));
  let daemon: Daemon | null = null;
  try {
    await waitForHealth([blue, green], 'targets up');
    daemon = await Daemon.start(loadConfigFile(path.join(dir, 'cutover.yaml')), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
    assert.match(daemon.adminUrl(), /^https:/);
    assert.match(daemon.liveUrl(), /^https:/);
    assert.equal((await daemon.controller.deploy({ version: 'r1', path: null, actor: 'test' }).done).status, 'succeeded');
    // The CLI reads admin.tls from the config and trusts that certificate.
    const st = await cli(['status', '--json'], { cwd: dir });
    assert.equal(st.code, 0, st.stderr);
    assert.equal((JSON.parse(st.stdout) as { live: { version: string } }).live.version, 'r1');

    const keptLive = await tlsClient(ports.live, ca);
    const keptAdmin = await tlsClient(ports.admin, ca);
    assert.equal(keptLive.cn(), 'cutover-a');
    assert.equal((await keptLive.get('/version')).status, 200);
    copyFileSync(b.cert, path.join(dir, 'tls.crt'));
    copyFileSync(b.key, path.join(dir, 'tls.key'));
    process.kill(process.pid, 'SIGHUP'); // the daemon's handler; without one this would end the test process
    await waitFor(() => daemon!.controller.events({ limit: 10_000 }).filter((e) => e.type === 'tls.reload').length === 2, { what: 'two tls.reload events' });
    assert.equal(await peerCn(ports.live, ca), 'cutover-b');
    assert.equal(await peerCn(ports.admin, ca), 'cutover-b');
    assert.equal((await keptLive.get('/version')).status, 200, 'live keep-alive connection survived');
    assert.equal((await keptAdmin.get('/api/v1/nope')).status, 401, 'admin keep-alive connection survived (and still needs the token)');
    const client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN, ca: [Buffer.from(ca[1])] });
    assert.equal((await client.call<{ live: { version: string } }>('GET', '/status')).live.version, 'r1');

    // A broken file: refused, recorded, the running certificate stays.
    writeFileSync(path.join(dir, 'tls.key'), 'not a key');
    const r = daemon.reloadTls();
    assert.deepEqual(r, { router: false, admin: false });
    const failed = daemon.controller.events({ limit: 10_000 }).filter((e) => e.type === 'tls.reload.failed');
    assert.equal(failed.length, 2);
    assert.equal(await peerCn(ports.live, ca), 'cutover-b');
    keptLive.close();
    keptAdmin.close();
  } finally {
    await daemon?.stop({ stopInstances: true });
    for (const c of children) c.kill('SIGKILL');
    cleanup();
  }
});

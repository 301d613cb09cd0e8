/**
 * Automatic certificates against a real ACME server on loopback (Pebble + pebble-challtestsrv,
 * which resolves every name to 127.0.0.1): the router answers the HTTP-01 challenge on its plain
 * listener, the certificate is served by SNI on the TLS listener (HTTP/2 and HTTP/1.1), it is
 * renewed when due, and an unreachable ACME server leaves the old certificate serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Router } from '../src/router/router.ts';
import { routes, startUpstream, TestHealth } from './support/router.ts';
import { CertificateStore } from '../src/tls/certificate-store.ts';
import { AcmeManager, type AcmeEvent } from '../src/tls/acme-manager.ts';
import { Daemon } from '../src/daemon/daemon.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { freePort, SHOP_V1, SHOP_V2, tempDir, TEST_TOKEN, waitFor, writeConfig } from './helpers.ts';
import { startPebble } from './pebble.ts';

const HOST = 'shop.test';

/** The serial of the certificate served for `servername`, verified against `ca`. */
function servedSerial(port: number, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, ca, ALPNProtocols: ['http/1.1'] }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial);
    });
    s.once('error', reject);
    s.setTimeout(5_000, () => s.destroy(new Error('TLS handshake timed out')));
  });
}

function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => execFile('curl', ['-sS', '--max-time', '10', ...args], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))));
}

test('a certificate is obtained over HTTP-01 through the router, served by SNI (HTTP/2 and HTTP/1.1), renewed, and kept when the ACME server is gone', { timeout: 90_000 }, async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const [httpPort, tlsPort] = [await freePort(), await freePort()];
  const pebble = await startPebble(tmp.dir, httpPort);
  t.after(() => pebble.stop());
  const upstream = await startUpstream('blue', 0);
  t.after(() => upstream.close());

  let clock = Date.now();
  const events: AcmeEvent[] = [];
  const store = new CertificateStore();
  const acme = new AcmeManager({
    directory: pebble.directory, email: 'ops@example.com', caFile: pebble.caFile, hosts: [HOST],
    stateDir: tmp.dir, store, now: () => clock, onEvent: (e) => events.push(e),
  });
  t.after(() => acme.close());
  const router = new Router({
    listen: { host: '127.0.0.1', port: httpPort }, preview: null, tlsListen: { host: '127.0.0.1', port: tlsPort },
    drainTimeoutMs: 1_000, health: new TestHealth(), certificates: store, acmeChallenge: (tok) => acme.challengeResponse(tok),
  });
  t.after(() => router.close());
  router.swap(routes({ color: 'blue', version: 'v1', targets: [upstream.target] }));
  await router.start();

  // 1. Issued through the router's HTTP listener (Pebble's VA fetched the challenge from it).
  await acme.check();
  assert.deepEqual(events.map((e) => e.type), ['tls.certificate.issued'], `${JSON.stringify(events)}\n${pebble.output()}`);
  const root = await pebble.issuingRoot();
  const rootFile = path.join(tmp.dir, 'root.pem');
  writeFileSync(rootFile, root);
  const first = await servedSerial(tlsPort, HOST, root);
  assert.equal(first, store.info(HOST)?.serial);
  for (const f of ['shop.test.crt', 'shop.test.key', 'account.key']) {
    assert.equal(statSync(path.join(tmp.dir, 'acme', f)).mode & 0o777, 0o600, `${f} is 0600`);
  }
  assert.equal(statSync(path.join(tmp.dir, 'acme')).mode & 0o777, 0o700);

  // 2. The same answers over HTTP/2 and HTTP/1.1 on the TLS listener (curl, certificate verified).
  const base = ['--resolve', `${HOST}:${tlsPort}:127.0.0.1`, '--cacert', rootFile, '-w', ' %{http_version}'];
  assert.equal(await curl([...base, '--http2', `https://${HOST}:${tlsPort}/`]), 'blue blue-0 2');
  assert.equal(await curl([...base, '--http1.1', `https://${HOST}:${tlsPort}/`]), 'blue blue-0 1.1');
  // node:http2 too, with the forwarded headers the application sees.
  const session = h2connect(`https://127.0.0.1:${tlsPort}`, { ca: root, servername: HOST });
  t.after(() => session.close());
  const seen = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const r = session.request({ ':path': '/headers', ':authority': `${HOST}:${tlsPort}`, cookie: 'a=1' });
    let body = '';
    let status = 0;
    r.on('response', (h) => { status = Number(h[':status']); });
    r.setEncoding('utf8');
    r.on('data', (d: string) => { body += d; });
    r.on('end', () => resolve({ status, body }));
    r.on('error', reject);
    r.end();
  });
  assert.equal(seen.status, 200);
  const raw = (JSON.parse(seen.body) as { raw: string[] }).raw;
  const header = (n: string) => raw[raw.findIndex((x, i) => i % 2 === 0 && x.toLowerCase() === n) + 1];
  assert.equal(header('host'), `${HOST}:${tlsPort}`);
  assert.equal(header('x-forwarded-proto'), 'https');
  assert.ok(!raw.some((x, i) => i % 2 === 0 && x.startsWith(':')), 'no pseudo-header reaches the application');

  // 3. Renewal: once the renewal time has come, a new certificate replaces the old one for new handshakes.
  const renewAt = acme.status()[0].renewAt!;
  assert.ok(renewAt > Date.now() && renewAt < store.info(HOST)!.notAfter, 'renewal is scheduled before expiry');
  await acme.check();
  assert.equal(events.length, 1, 'nothing is renewed before it is due');
  clock = renewAt + 1;
  await acme.check();
  assert.equal(events.at(-1)?.type, 'tls.certificate.renewed', pebble.output());
  const second = await servedSerial(tlsPort, HOST, root);
  assert.notEqual(second, first);

  // 4. ACME server unreachable at the next renewal: failure reported, the current certificate stays.
  await pebble.stop();
  clock = acme.status()[0].renewAt! + 1;
  await acme.check();
  const failed = events.at(-1)!;
  assert.equal(failed.type, 'tls.certificate.failed');
  assert.match(failed.reason, /stays in service/);
  assert.equal(failed.data.serving, true);
  assert.equal(await servedSerial(tlsPort, HOST, root), second);
  assert.equal(await curl([...base, '--http2', `https://${HOST}:${tlsPort}/`]), 'blue blue-0 2');
  const st = acme.status()[0];
  assert.ok(st.lastError !== null && st.nextAttemptAt !== null && st.nextAttemptAt > clock, 'the failure is reported with a retry time');
  assert.doesNotMatch(JSON.stringify(events), /PRIVATE KEY/);

  // 5. A restart serves the stored certificate at once, before any ACME call.
  const store2 = new CertificateStore();
  const acme2 = new AcmeManager({ directory: pebble.directory, caFile: pebble.caFile, hosts: [HOST], stateDir: tmp.dir, store: store2, now: () => Date.now() });
  acme2.start();
  await acme2.close();
  assert.equal(store2.info(HOST)?.serial, second);
});

test('the daemon with services: ACME certificates for one service\'s hosts, certificate files for the other, each served by SNI; reported in status and events', { timeout: 120_000 }, async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const [httpPort, tlsPort, preview, admin] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const pebble = await startPebble(tmp.dir, httpPort);
  t.after(() => pebble.stop());
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(tmp.dir, 'blog.key'), '-out', path.join(tmp.dir, 'blog.crt'),
    '-days', '1', '-subj', '/CN=blog.test', '-addext', 'subjectAltName=DNS:blog.test'], { stdio: 'ignore' });
  const file = writeConfig(tmp.dir, [
    'router:',
    `  listen: 127.0.0.1:${httpPort}`,
    `  preview: 127.0.0.1:${preview}`,
    '  tls:',
    `    listen: 127.0.0.1:${tlsPort}`,
    `    acme: { directory: "${pebble.directory}", email: ops@example.com, caFile: pebble.crt }`,
    `admin: { listen: 127.0.0.1:${admin} }`,
    'environments: { provider: process, process: { command: node server.js, instances: 1 } }',
    'health: { interval: 100ms, timeout: 1s }',
    'services:',
    '  shop: { hosts: [shop.test] }',
    '  blog: { hosts: [blog.test], tls: { cert: blog.crt, key: blog.key } }',
  ].join('\n'));
  const daemon = await Daemon.start(loadConfigFile(file), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
  t.after(() => daemon.stop({ stopInstances: true }));
  assert.equal(daemon.tlsUrl(), `https://127.0.0.1:${tlsPort}`);
  await daemon.service('shop').controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
  await daemon.service('blog').controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done;
  type Tls = { tls?: { certificates: { host: string; serving: boolean; lastError: string | null }[] } };
  await waitFor(() => (daemon.service('shop').controller.status() as Tls).tls?.certificates[0]?.serving, { what: `shop.test certificate\n${pebble.output()}`, timeoutMs: 30_000 });
  assert.ok(daemon.service('shop').controller.events({ limit: 1000 }).some((e) => e.type === 'tls.certificate.issued'), 'issuance is an event of the service owning the host');
  assert.deepEqual((daemon.service('blog').controller.status() as Tls).tls?.certificates, [], 'blog has its own files, not ACME');
  const root = await pebble.issuingRoot();
  const rootFile = path.join(tmp.dir, 'root.pem');
  writeFileSync(rootFile, root);
  const shop = await curl(['--resolve', `shop.test:${tlsPort}:127.0.0.1`, '--cacert', rootFile, '--http2', '-w', ' %{http_version}', `https://shop.test:${tlsPort}/version`]);
  assert.match(shop, /"version":"v1".* 2$/);
  const blog = await curl(['--resolve', `blog.test:${tlsPort}:127.0.0.1`, '--cacert', path.join(tmp.dir, 'blog.crt'), '--http2', '-w', ' %{http_version}', `https://blog.test:${tlsPort}/version`]);
  assert.match(blog, /"version":"v2".* 2$/);
  // The plain listener still serves both by host (and answered the challenge).
  const plain = await curl(['-H', 'host: blog.test', `http://127.0.0.1:${httpPort}/version`]);
  assert.match(plain, /"version":"v2"/);
});

/**
 * Certificate files per service on the TLS listener: each service's hosts get its own certificate
 * by SNI, `router.tls` files answer clients without a known name, and SIGHUP's reload gives new
 * handshakes a replaced certificate — while a bad pair is refused and the current one stays.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Daemon } from '../src/daemon/daemon.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { freePort, freePorts, SHOP_V1, tempDir, TEST_TOKEN, writeConfig } from './helpers.ts';

function makeCert(dir: string, name: string, cn: string, san: string): void {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(dir, `${name}.key`), '-out', path.join(dir, `${name}.crt`),
    '-days', '1', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`], { stdio: 'ignore' });
}

/** The CN of the certificate the TLS listener presents for `servername` (none: no SNI). */
function servedCn(port: number, servername: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}), rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      resolve(String(s.getPeerCertificate().subject.CN));
      s.destroy();
    });
    s.once('error', reject);
  });
}

test('each service\'s certificate files by SNI, the router.tls files as fallback, reloaded on SIGHUP', { timeout: 60_000 }, async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const ports = await freePorts();
  const tlsPort = await freePort();
  makeCert(tmp.dir, 'default', 'fallback', 'DNS:localhost');
  makeCert(tmp.dir, 'shop', 'shop-1', 'DNS:shop.test');
  makeCert(tmp.dir, 'blog', 'blog-1', 'DNS:blog.test');
  const file = writeConfig(tmp.dir, [
    `router: { listen: 127.0.0.1:${ports.live}, preview: 127.0.0.1:${ports.preview}, tls: { listen: 127.0.0.1:${tlsPort}, cert: default.crt, key: default.key } }`,
    `admin: { listen: 127.0.0.1:${ports.admin} }`,
    'environments: { provider: process, process: { command: node server.js, instances: 1 } }',
    'health: { interval: 100ms, timeout: 1s }',
    'services:',
    '  shop: { hosts: [shop.test], tls: { cert: shop.crt, key: shop.key } }',
    '  blog: { hosts: [blog.test], tls: { cert: blog.crt, key: blog.key } }',
  ].join('\n'));
  const daemon = await Daemon.start(loadConfigFile(file), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
  t.after(() => daemon.stop({ stopInstances: true }));
  await daemon.service('shop').controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
  assert.equal(await servedCn(tlsPort, 'shop.test'), 'shop-1');
  assert.equal(await servedCn(tlsPort, 'BLOG.test'), 'blog-1');
  assert.equal(await servedCn(tlsPort, 'other.test'), 'fallback');
  assert.equal(await servedCn(tlsPort, undefined), 'fallback');

  // A renewed certificate on disk: SIGHUP's reload serves it to new handshakes.
  makeCert(tmp.dir, 'shop-next', 'shop-2', 'DNS:shop.test');
  copyFileSync(path.join(tmp.dir, 'shop-next.crt'), path.join(tmp.dir, 'shop.crt'));
  copyFileSync(path.join(tmp.dir, 'shop-next.key'), path.join(tmp.dir, 'shop.key'));
  process.kill(process.pid, 'SIGHUP');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await servedCn(tlsPort, 'shop.test'), 'shop-2');
  assert.ok(daemon.service('shop').controller.events({ limit: 1000 }).some((e) => e.type === 'tls.reload'));

  // The router.tls pair too, for names no service has and for clients without SNI.
  makeCert(tmp.dir, 'default-next', 'fallback-2', 'DNS:localhost');
  copyFileSync(path.join(tmp.dir, 'default-next.crt'), path.join(tmp.dir, 'default.crt'));
  copyFileSync(path.join(tmp.dir, 'default-next.key'), path.join(tmp.dir, 'default.key'));
  assert.deepEqual(daemon.reloadTls(), { router: true, admin: false });
  assert.equal(await servedCn(tlsPort, 'other.test'), 'fallback-2');
  assert.equal(await servedCn(tlsPort, undefined), 'fallback-2');

  // A half-written pair (key of another certificate): refused, the current certificate stays, recorded.
  writeFileSync(path.join(tmp.dir, 'blog.key'), readFileSync(path.join(tmp.dir, 'shop.key')));
  daemon.reloadTls();
  assert.equal(await servedCn(tlsPort, 'blog.test'), 'blog-1');
  const failed = daemon.service('blog').controller.events({ limit: 1000 }).find((e) => e.type === 'tls.reload.failed');
  assert.match(failed?.reason ?? '', /services\.blog\.tls certificate not reloaded, the current one stays/);
  assert.doesNotMatch(failed?.reason ?? '', /PRIVATE KEY/);
});

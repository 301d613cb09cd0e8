/**
 * Services survive `kill -9` of `cutover up` (DESIGN promise 5, per service): the restarted
 * daemon serves each host's recorded live version before anything else, and adopts each
 * service's instances (same pids, no duplicates). Driven through the real CLI with -s.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { cli, freePorts, instancesOf, killAll, SHOP_V1, SHOP_V2, startDaemonProcess, tempDir, writeConfig } from './helpers.ts';

/** The version a host's live release answers with (node:http: fetch may not set Host). */
function versionAt(port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/version', headers: { host }, timeout: 5_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => resolve(res.statusCode === 200 ? (JSON.parse(text) as { version: string }).version : `${res.statusCode}: ${text.trim()}`));
    });
    req.on('error', reject);
    req.end();
  });
}

test('after kill -9 each service serves its recorded live version and keeps its instances', { timeout: 120_000 }, async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const ports = await freePorts();
  writeConfig(tmp.dir, [
    `router: { listen: 127.0.0.1:${ports.live}, preview: 127.0.0.1:${ports.preview} }`,
    `admin: { listen: 127.0.0.1:${ports.admin} }`,
    'environments: { provider: process, process: { command: node server.js, instances: 1, startTimeout: 10s } }',
    'health: { interval: 100ms, timeout: 1s }',
    'services:',
    '  shop: { hosts: [shop.test] }',
    '  blog: { hosts: [blog.test] }',
  ].join('\n'));
  const dirs = { shop: path.join(tmp.dir, '.cutover', 'services', 'shop'), blog: path.join(tmp.dir, '.cutover', 'services', 'blog') };
  t.after(() => killAll([...instancesOf(dirs.shop), ...instancesOf(dirs.blog)]));
  let daemon = await startDaemonProcess(tmp.dir);
  t.after(() => daemon.stop());
  assert.match(daemon.output(), /service {2}shop: shop\.test/);
  for (const [svc, v, p] of [['shop', 'v1', SHOP_V1], ['blog', 'v1', SHOP_V1], ['shop', 'v2', SHOP_V2]] as const) {
    const r = await cli(['deploy', v, '-s', svc, '--path', p], { cwd: tmp.dir });
    assert.equal(r.code, 0, `${svc} ${v}: ${r.stdout}\n${r.stderr}`);
  }
  assert.equal(await versionAt(ports.live, 'shop.test'), 'v2');
  assert.equal(await versionAt(ports.live, 'blog.test'), 'v1');
  const before = { shop: instancesOf(dirs.shop).sort(), blog: instancesOf(dirs.blog).sort() };
  assert.equal(before.shop.length, 2, 'shop: v2 live and v1 standby, one instance each');
  assert.equal(before.blog.length, 1);

  await daemon.stop('SIGKILL');
  daemon = await startDaemonProcess(tmp.dir);
  assert.equal(await versionAt(ports.live, 'shop.test'), 'v2');
  assert.equal(await versionAt(ports.live, 'blog.test'), 'v1');
  assert.deepEqual({ shop: instancesOf(dirs.shop).sort(), blog: instancesOf(dirs.blog).sort() }, before, 'adopted, not restarted');
  const rb = await cli(['rollback', '-s', 'shop'], { cwd: tmp.dir });
  assert.equal(rb.code, 0, rb.stderr);
  assert.equal(await versionAt(ports.live, 'shop.test'), 'v1');
  assert.equal(await versionAt(ports.live, 'blog.test'), 'v1');

  // `cutover state` works on one service's state directory, named with -s.
  const check = await cli(['state', 'check', '-s', 'blog'], { cwd: tmp.dir });
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, /state directory .*\.cutover\/services\/blog\n\s+daemon\s+running/);
  const unnamed = await cli(['state', 'check'], { cwd: tmp.dir });
  assert.equal(unnamed.code, 2);
  assert.match(unnamed.stderr, /each service has its own state directory: name one with --service NAME \(services: shop, blog\)/);
  const restore = await cli(['state', 'restore', '-s', 'shop'], { cwd: tmp.dir });
  assert.notEqual(restore.code, 0, 'refused while the daemon holds the service directory');
  assert.match(restore.stderr, /already running/);
});

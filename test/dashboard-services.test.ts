/**
 * The dashboard with `services:` (real Chromium against a real daemon): a service picker in the
 * header, and each service's section shows that service's own colours and versions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { Daemon } from '../src/daemon/daemon.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { telemetryPlugin } from '../src/telemetry/plugin.ts';
import { SHOP_V1, SHOP_V2, TEST_TOKEN, freePorts, tempDir, writeConfig } from './helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const skip = !existsSync(CHROMIUM) && 'chromium is not installed (Debian package chromium)';

test('a service picker switches the page between services, each with its own versions', { skip, timeout: 90_000 }, async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const ports = await freePorts();
  const file = writeConfig(tmp.dir, [
    `router: { listen: 127.0.0.1:${ports.live}, preview: 127.0.0.1:${ports.preview} }`,
    `admin: { listen: 127.0.0.1:${ports.admin} }`,
    'environments: { provider: process, process: { command: node server.js, instances: 1 } }',
    'health: { interval: 100ms, timeout: 1s }',
    'services:',
    '  shop: { hosts: [shop.test] }',
    '  blog: { hosts: [blog.test] }',
  ].join('\n'));
  const daemon = await Daemon.start(loadConfigFile(file), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: [telemetryPlugin({ processMetrics: false })] });
  t.after(() => daemon.stop({ stopInstances: true }));
  await daemon.service('shop').controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
  const blog = daemon.service('blog').controller;
  await blog.deploy({ version: 'b1', path: SHOP_V1, actor: 'test' }).done;
  await blog.deploy({ version: 'b2', path: SHOP_V2, actor: 'test' }).done;

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage();
  page.setDefaultTimeout(10_000);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(daemon.adminUrl());
  await page.getByLabel('Token', { exact: true }).fill(TEST_TOKEN);
  await page.keyboard.press('Enter');
  // The first service is shown: shop, v1 live on blue, green empty.
  await page.getByTestId('version-blue').filter({ hasText: 'v1' }).waitFor();
  assert.equal(await page.getByTestId('role-blue').textContent(), 'Live');
  assert.deepEqual(await page.locator('#service option').allTextContents(), ['shop (v1)', 'blog (b2)']);
  await page.getByLabel('Service').selectOption('blog');
  await page.getByTestId('version-green').filter({ hasText: 'b2' }).waitFor();
  assert.equal(await page.getByTestId('role-green').textContent(), 'Live');
  assert.equal(await page.getByTestId('version-blue').textContent(), 'b1');
  assert.match(page.url(), /#service=blog$/);
  assert.deepEqual(errors, []);
});

/**
 * The dashboard in real Chromium (Debian's, driven by playwright-core) against a real daemon:
 * it asks for the token, shows the live version, follows a switch without a reload, and rolls
 * back from the keyboard after a confirmation.
 *
 * CUTOVER_SCREENSHOT=docs/dashboard.png writes the screenshot kept in the docs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request } from 'undici';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { telemetryPlugin } from '../src/telemetry/plugin.ts';
import { SHOP_V1, SHOP_V2, TEST_TOKEN, configYaml, freePorts, instancesOf, killAll, tempDir } from './helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const skip = !existsSync(CHROMIUM) && 'chromium is not installed (Debian package chromium)';

let daemon: Daemon;
let client: AdminClient;
let browser: Browser;
let page: Page;
let stateDir: string;
let cleanup: () => void;

async function deploy(version: string, path: string): Promise<void> {
  await client.call('POST', '/deployments', { version, path });
  const d = await daemon.controller.current()!.done;
  assert.equal(d.status, 'succeeded', d.error?.message);
}

async function traffic(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await (await request(`${daemon.liveUrl()}/`)).body.dump();
}

before(async () => {
  if (skip) return;
  const t = tempDir();
  cleanup = t.cleanup;
  const config = parseConfig(configYaml(await freePorts(), { instances: 2, drainTimeout: '1s', startTimeout: '5s' }), { file: 'cutover.yaml', baseDir: t.dir });
  stateDir = config.stateDir;
  daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: [telemetryPlugin({ processMetrics: false, postSwitchWindowMs: 500 })] });
  client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN, actor: 'test' });
  await deploy('v1', SHOP_V1);
  await traffic(20);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  page.setDefaultTimeout(10_000);
});

after(async () => {
  await browser?.close();
  await client?.close();
  await daemon?.stop({ stopInstances: true });
  if (stateDir) killAll(instancesOf(stateDir));
  cleanup?.();
});

test('the page is a static shell served without the token, with a strict content security policy', { skip }, async () => {
  const res = await request(`${daemon.adminUrl()}/`);
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
  assert.equal(res.headers['x-frame-options'], 'DENY');
  const html = await res.body.text();
  assert.doesNotMatch(html, /https?:\/\//, 'no CDN or other origin');
  assert.doesNotMatch(html, new RegExp(TEST_TOKEN));
  const js = await request(`${daemon.adminUrl()}/ui/app.js`);
  assert.equal(js.statusCode, 200);
  assert.match(String(js.headers['content-type']), /^text\/javascript/);
  await js.body.dump();
});

test('a wrong token is refused; the right one shows the live version', { skip }, async () => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(daemon.adminUrl());
  await page.getByLabel('Token', { exact: true }).fill('not-the-token');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.getByText('That token was not accepted.').waitFor();
  await page.getByLabel('Token', { exact: true }).fill(TEST_TOKEN);
  await page.keyboard.press('Enter');
  await page.getByTestId('version-blue').filter({ hasText: 'v1' }).waitFor();
  assert.equal(await page.getByTestId('role-blue').textContent(), 'Live');
  assert.equal(await page.getByTestId('deployment-status').textContent(), 'succeeded');
  assert.ok(!page.url().includes(TEST_TOKEN), 'the token is never in the URL');
  assert.equal(await page.evaluate('localStorage.length'), 0, 'nothing in localStorage');
  assert.equal(await page.evaluate("sessionStorage.getItem('cutover.token')"), TEST_TOKEN);
  assert.deepEqual(errors, []);
});

test('a switch shows on the page without a reload', { skip }, async () => {
  await page.evaluate(() => { (globalThis as unknown as { marker: number }).marker = 42; });
  await deploy('v2', SHOP_V2);
  await traffic(20);
  await page.getByTestId('role-green').filter({ hasText: 'Live' }).waitFor({ timeout: 5_000 });
  assert.equal(await page.getByTestId('version-green').textContent(), 'v2');
  assert.equal(await page.getByTestId('role-blue').textContent(), 'standby');
  assert.equal(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker), 42, 'same page, no reload');
  await page.locator('#events li', { hasText: 'live blue (v1) → green (v2)' }).first().waitFor();
  await page.locator('.timeline li[data-phase="switch"].passed').waitFor();
});

test('rollback from the keyboard asks for confirmation, then switches back', { skip }, async () => {
  await page.focus('#btn-rollback');
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Confirm' });
  await dialog.waitFor();
  assert.match(await dialog.textContent() ?? '', /back to v1 \(blue\)/);
  // Cancel first: nothing happens.
  await page.keyboard.press('Enter'); // focus starts on Cancel
  await dialog.waitFor({ state: 'hidden' });
  assert.equal((await client.call<{ live: { color: string } }>('GET', '/status')).live.color, 'green');

  await page.focus('#btn-rollback');
  await page.keyboard.press('Enter');
  await dialog.waitFor();
  await page.keyboard.press('Tab'); // to Confirm
  await page.keyboard.press('Enter');
  await page.getByText(/Rolled back: v1 is live on blue/).waitFor();
  await page.getByTestId('role-blue').filter({ hasText: 'Live' }).waitFor();
  const s = await client.call<{ live: { color: string; version: string } }>('GET', '/status');
  assert.deepEqual([s.live.color, s.live.version], ['blue', 'v1']);
  const events = daemon.controller.events({ limit: 1000 });
  const rb = events.find((e) => e.type === 'rollback');
  assert.equal(rb?.actor, 'dashboard', 'recorded as done from the dashboard');
  await page.getByTestId('fig-cutover').filter({ hasText: '50.00%' }).waitFor();
});

test('charts draw both colours and the page keeps its screenshot', { skip }, async () => {
  await traffic(10);
  await page.waitForFunction("document.querySelectorAll('#chart-rps path.line').length === 2", undefined, { timeout: 8_000 });
  assert.match(await page.locator('#chart-rps svg').getAttribute('aria-label') ?? '', /^Requests \/ s, last 15 minutes; latest: blue /);
  const out = process.env.CUTOVER_SCREENSHOT;
  if (out) await page.screenshot({ path: out, fullPage: true });
});

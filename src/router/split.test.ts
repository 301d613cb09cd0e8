/**
 * Gradual switch in the router: a split sends a share of new visitors to another colour by
 * request share (not by instance counts), a visitor keeps its colour by the router's cookie or a
 * hash of a header, and a split colour with no healthy instance leaves its share on live.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Pool } from 'undici';
import { silentLogger } from '../lib/logger.ts';
import { freezeTable, type RouteTable, type Stickiness } from './route-table.ts';
import { Router } from './router.ts';
import { chooseSplit, cookieValue, DEFAULT_VISITOR_COOKIE, visitorHash } from './split.ts';
import { startUpstream, TestHealth, type TestUpstream } from '../../test/support/router.ts';

let ups: TestUpstream[] = [];
let router: Router;
let pool: Pool;
const health = new TestHealth();
const COOKIE: Stickiness = { kind: 'cookie', name: DEFAULT_VISITOR_COOKIE };
let revision = 100;

before(async () => {
  // One blue instance, three green ones: the share must not follow instance counts.
  ups = await Promise.all([startUpstream('blue', 0), startUpstream('green', 0), startUpstream('green', 1), startUpstream('green', 2)]);
  router = new Router({ listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: 2_000, health, logger: silentLogger });
  await router.start();
  pool = new Pool(`http://127.0.0.1:${router.addresses().live.port}`, { connections: 8 });
});
after(async () => {
  await pool?.close();
  await router?.close();
  await Promise.all(ups.map((u) => u.close()));
});

function table(share: number, stickiness: Stickiness = COOKIE): RouteTable {
  const t = (c: 'blue' | 'green') => ups.filter((u) => u.color === c).map((u) => u.target);
  return freezeTable({
    revision: ++revision,
    live: { color: 'blue', version: 'v1', targets: t('blue') },
    preview: { color: 'green', version: 'v2', targets: t('green') },
    split: share > 0 ? { route: { color: 'green', version: 'v2', targets: t('green') }, share, stickiness } : null,
  });
}

async function get(headers: Record<string, string> = {}): Promise<{ color: string; setCookie: string | undefined }> {
  const res = await pool.request({ path: '/', method: 'GET', headers });
  const body = await res.body.text();
  const sc = res.headers['set-cookie'];
  return { color: body.split(' ')[0], setCookie: Array.isArray(sc) ? sc[0] : sc };
}

test('visitor hash is stable, uniform enough, and the cookie parser finds only whole names', () => {
  assert.equal(visitorHash('abc'), visitorHash('abc'));
  let below = 0;
  for (let i = 0; i < 10_000; i++) if (visitorHash(`user-${i}`) < 0.2) below++;
  assert.ok(below > 1_800 && below < 2_200, `${below} of 10000 below 0.2`);
  assert.equal(cookieValue('a=1; cutover_visitor=xyz; b=2', 'cutover_visitor'), 'xyz');
  assert.equal(cookieValue('xcutover_visitor=no; cutover_visitor=yes', 'cutover_visitor'), 'yes');
  assert.equal(cookieValue('a=1', 'cutover_visitor'), undefined);
});

test('at 20 % a split sends 20 ± 5 % of 1000 new visitors to green (1 blue vs 3 green instances), each with a visitor cookie', async () => {
  router.swap(table(0.2));
  let green = 0;
  const cookies: { cookie: string; color: string }[] = [];
  for (let i = 0; i < 1_000; i++) {
    const r = await get();
    if (r.color === 'green') green++;
    assert.ok(r.setCookie?.startsWith(`${DEFAULT_VISITOR_COOKIE}=`), 'a new visitor gets the cookie');
    assert.match(r.setCookie!, /; Path=\/; Max-Age=86400; HttpOnly; SameSite=Lax$/);
    if (i < 50) cookies.push({ cookie: r.setCookie!.split(';')[0], color: r.color });
  }
  assert.ok(green >= 150 && green <= 250, `${green} of 1000 new visitors on green`);

  // Each visitor keeps its colour on every later request, and is not given a new cookie.
  for (const v of cookies) {
    for (let k = 0; k < 5; k++) {
      const r = await get({ cookie: `other=1; ${v.cookie}` });
      assert.equal(r.color, v.color, `visitor ${v.cookie} stays on ${v.color}`);
      assert.equal(r.setCookie, undefined);
    }
  }

  // The share grows: every visitor already on green stays on green.
  router.swap(table(0.6));
  for (const v of cookies.filter((x) => x.color === 'green')) assert.equal((await get({ cookie: v.cookie })).color, 'green');
  // Back to 0 %: everyone is on blue at once, and no cookie is set any more.
  router.swap(table(0));
  for (const v of cookies) {
    const r = await get({ cookie: v.cookie });
    assert.equal(r.color, 'blue');
    assert.equal(r.setCookie, undefined);
  }
});

test('header stickiness: the same X-User-Id always lands on the same colour, and no cookie is set', async () => {
  router.swap(table(0.3, { kind: 'header', name: 'x-user-id' }));
  let green = 0;
  for (let u = 0; u < 300; u++) {
    const first = await get({ 'x-user-id': `u${u}` });
    assert.equal(first.setCookie, undefined);
    if (first.color === 'green') green++;
    assert.equal((await get({ 'x-user-id': `u${u}` })).color, first.color);
    assert.equal(first.color === 'green', visitorHash(`u${u}`) < 0.3);
  }
  assert.ok(green > 45 && green < 135, `${green} of 300 users on green`);
});

test('a split colour with no healthy instance leaves its share on the live colour (never route to nothing)', async () => {
  router.swap(table(0.5, { kind: 'none' }));
  for (const u of ups.filter((x) => x.color === 'green')) health.down.add(u.id);
  try {
    for (let i = 0; i < 100; i++) assert.equal((await get()).color, 'blue');
  } finally {
    health.down.clear();
  }
  let green = 0;
  for (let i = 0; i < 200; i++) if ((await get()).color === 'green') green++;
  assert.ok(green > 50 && green < 150, `${green} of 200 on green once healthy`);
});

test('chooseSplit: 0 % and 100 % never set a cookie; Secure on an HTTPS listener', () => {
  const req = { headers: {} } as Parameters<typeof chooseSplit>[0];
  assert.deepEqual(chooseSplit(req, 0, COOKIE, false), { split: false, setCookie: null });
  assert.deepEqual(chooseSplit(req, 1, COOKIE, false), { split: true, setCookie: null });
  assert.match(chooseSplit(req, 0.5, COOKIE, true).setCookie ?? '', /; Secure$/);
});

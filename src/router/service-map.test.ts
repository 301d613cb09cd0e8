import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildServiceMap, duplicateRoutes, normaliseHost, resolveService } from './service-map.ts';

const map = buildServiceMap([
  { name: 'shop', hosts: ['shop.example.com', 'Www.Shop.Example.com'] },
  { name: 'api', hosts: ['shop.example.com'], paths: ['/api', '/v2/'] },
  { name: 'tenants', hosts: ['*.apps.example.com'] },
  { name: 'admin', hosts: ['admin.apps.example.com'] },
]);

test('hosts match without port, case or trailing dot; unknown hosts get null without a default', () => {
  assert.equal(resolveService(map, 'shop.example.com', '/'), 'shop');
  assert.equal(resolveService(map, 'SHOP.example.com.:8443', '/cart'), 'shop');
  assert.equal(resolveService(map, 'www.shop.example.com', '/'), 'shop');
  assert.equal(resolveService(map, 'blog.example.com', '/'), null);
  assert.equal(resolveService(map, undefined, '/'), null);
  assert.equal(resolveService(buildServiceMap([{ name: 'a', hosts: ['a.test'] }], 'a'), 'other.test', '/'), 'a');
});

test('the longest path prefix wins, at a segment boundary only', () => {
  assert.equal(resolveService(map, 'shop.example.com', '/api'), 'api');
  assert.equal(resolveService(map, 'shop.example.com', '/api/orders?x=1'), 'api');
  assert.equal(resolveService(map, 'shop.example.com', '/api?x=1'), 'api');
  assert.equal(resolveService(map, 'shop.example.com', '/apix'), 'shop');
  assert.equal(resolveService(map, 'shop.example.com', '/v2/x'), 'api');
  assert.equal(resolveService(map, 'shop.example.com', '/v2'), 'api');
});

test('an exact host beats a wildcard, which covers one label only', () => {
  assert.equal(resolveService(map, 'admin.apps.example.com', '/'), 'admin');
  assert.equal(resolveService(map, 'acme.apps.example.com', '/'), 'tenants');
  assert.equal(resolveService(map, 'apps.example.com', '/'), null);
});

test('IPv6 and bracketed hosts normalise; duplicates across services are found', () => {
  assert.equal(normaliseHost('[::1]:8080'), '::1');
  assert.equal(normaliseHost('::1'), '::1');
  assert.equal(normaliseHost(''), null);
  assert.deepEqual(duplicateRoutes(buildServiceMap([{ name: 'a', hosts: ['x.test'] }, { name: 'b', hosts: ['X.test'] }])), [{ host: 'x.test', prefix: '/', services: ['a', 'b'] }]);
  assert.deepEqual(duplicateRoutes(map), []);
});

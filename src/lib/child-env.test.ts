import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inheritedEnv, withoutCutoverSecrets } from './child-env.ts';

const daemon = {
  PATH: '/usr/bin', HOME: '/root', LC_ALL: 'C.UTF-8', LANG: 'C', TZ: 'UTC',
  CUTOVER_TOKEN: 'tok-0123456789abcdef', cutover_token: 'lower-case-too', CUTOVER_WEBHOOK_SECRET: 'whsec-0123456789',
  DATABASE_URL: 'postgres://u:p@db/x', SHOP_A: '1', SHOP_B: '2', AWS_SECRET_ACCESS_KEY: 'aws', COPY_OF_TOKEN: 'prefix tok-0123456789abcdef suffix',
};

test('only the base list passes by default: no CUTOVER_*, no other variable of the daemon', () => {
  assert.deepEqual(Object.keys(inheritedEnv(daemon)).sort(), ['HOME', 'LANG', 'LC_ALL', 'PATH', 'TZ']);
});

test('inheritEnv adds names and PREFIX_* patterns; Cutover variables and secret values never pass', () => {
  const env = inheritedEnv(daemon, { inherit: ['DATABASE_URL', 'SHOP_*', 'CUTOVER_TOKEN', 'COPY_OF_TOKEN'], secrets: ['tok-0123456789abcdef', 'short'] });
  assert.deepEqual(Object.keys(env).sort(), ['DATABASE_URL', 'HOME', 'LANG', 'LC_ALL', 'PATH', 'SHOP_A', 'SHOP_B', 'TZ']);
});

test('Cutover\'s own helpers get everything but Cutover variables and secrets', () => {
  const env = withoutCutoverSecrets(daemon, ['tok-0123456789abcdef']);
  assert.ok(env.AWS_SECRET_ACCESS_KEY && env.DATABASE_URL);
  assert.equal(env.CUTOVER_TOKEN, undefined);
  assert.equal(env.cutover_token, undefined);
  assert.equal(env.CUTOVER_WEBHOOK_SECRET, undefined);
  assert.equal(env.COPY_OF_TOKEN, undefined);
});

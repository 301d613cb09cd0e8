/** The `database:` section of cutover.yaml: defaults, the engine from the URL, errors with file:line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from './load.ts';
import { isCutoverError } from '../lib/errors.ts';
import { engineOf } from './database.ts';

const base = 'environments:\n  process:\n    command: node server.js\n';

test('a database section gets its defaults, and the engine comes from the URL scheme', () => {
  const c = parseConfig(`${base}database:\n  url: \${DB}\n`, { file: 'cutover.yaml', baseDir: '/tmp', env: { DB: 'mysql://root@127.0.0.1:3306/shop' } });
  assert.deepEqual(c.database, {
    url: 'mysql://root@127.0.0.1:3306/shop', migrations: './migrations', lint: 'error', table: 'cutover_migrations', urlEnv: 'DATABASE_URL', lockTimeout: 10_000,
    compatibility: {
      enabled: true, sampleRows: 100, paths: [], startTimeout: 30_000, requestTimeout: 10_000, requests: [],
      sample: {
        enabled: true, maxRequests: 200, perEndpoint: 5, methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], paths: ['/'], exclude: [],
        maxBodySize: 65_536, redactHeaders: [], redactFields: [], headers: {},
      },
    },
  });
  assert.equal(engineOf(c.database!), 'mysql');
  assert.equal(engineOf({ url: 'postgres://h/db' }), 'postgres');
});

test('a bad database setting is a config error naming file, line and field', () => {
  for (const [yaml, pattern] of [
    ['database:\n  url: shop.db\n', /cutover\.yaml:5: database\.url: expected a URL like postgres:\/\//],
    ['database:\n  url: postgres://h/db\n  lint: off\n', /cutover\.yaml:6: database\.lint: /],
    ['database:\n  url: postgres://h/db\n  compatibility:\n    sampleRows: -1\n', /cutover\.yaml:7: database\.compatibility\.sampleRows: /],
    ['database:\n  url: postgres://h/db\n  migration: ./db\n', /cutover\.yaml:6: database\.migration: unknown setting "migration"/],
    ['database:\n  url: postgres://h/db\n  compatibility:\n    sample:\n      maxBodySize: lots\n', /cutover\.yaml:8: database\.compatibility\.sample\.maxBodySize: expected a size/],
    ['database:\n  url: postgres://h/db\n  compatibility:\n    sample:\n      methods: [FETCH]\n', /cutover\.yaml:8: database\.compatibility\.sample\.methods\[0\]: /],
    ['database:\n  url: postgres://h/db\n  compatibility:\n    requests:\n      - path: products\n', /cutover\.yaml:8: database\.compatibility\.requests\[0\]\.path: expected a path starting with "\/"/],
    ['database:\n  url: postgres://h/db\n  compatibility:\n    requests:\n      - path: /p\n        status: ok\n', /cutover\.yaml:9: database\.compatibility\.requests\[0\]\.status: /],
  ] as const) {
    assert.throws(() => parseConfig(base + yaml, { file: 'cutover.yaml', baseDir: '/tmp' }), (err: unknown) => {
      assert.ok(isCutoverError(err, 'CUTOVER_ERR_CONFIG'));
      assert.match((err as Error).message, pattern);
      return true;
    });
  }
});

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isCutoverError } from '../lib/errors.ts';
import { StaticProvider } from './static-provider.ts';
import type { Instance } from './types.ts';

const targets = () => new StaticProvider({ blue: ['10.0.0.11:8080', '10.0.0.12:8080'], green: [{ host: '::1', port: 9090 }] });

describe('static provider', () => {
  test('checkRelease records any path, or none, as given: nothing is started from it', () => {
    const p = targets();
    assert.equal(p.checkRelease(null), null);
    assert.equal(p.checkRelease('/no/such/dir'), '/no/such/dir');
  });

  test('start records the version and returns the configured targets as instances without pids', async () => {
    const p = targets();
    const changed: Array<[string, Instance[]]> = [];
    p.on('instances-changed', (c, list) => changed.push([c, list]));
    const list = await p.start('blue', { version: 'v7', path: null });
    assert.deepEqual(list.map((i) => [i.id, i.host, i.port, i.pid, i.version, i.path]), [
      ['blue-0', '10.0.0.11', 8080, null, 'v7', null],
      ['blue-1', '10.0.0.12', 8080, null, 'v7', null],
    ]);
    assert.deepEqual(p.instances('blue'), list);
    assert.deepEqual(p.instances('green'), [], 'a colour never started has no instances');
    assert.equal(changed.length, 1);
  });

  test('stop forgets the version: a stopped colour has no instances', async () => {
    const p = targets();
    await p.start('green', { version: 'v1', path: null });
    assert.equal(p.instances('green')[0].host, '::1');
    await p.stop('green');
    assert.deepEqual(p.instances('green'), []);
  });

  test('adopt returns the configured list under the recorded version, and nothing when nothing was recorded', async () => {
    const before = targets();
    const recorded = await before.start('blue', { version: 'v3', path: null });
    const after = targets();
    assert.deepEqual(await after.adopt('blue', recorded), recorded);
    assert.deepEqual(await after.adopt('green', []), []);
  });

  test('a malformed target is a configuration error', () => {
    assert.throws(() => new StaticProvider({ blue: ['nonsense'], green: [] }), (err) => isCutoverError(err, 'CUTOVER_ERR_CONFIG'));
  });
});

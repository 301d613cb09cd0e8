import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Color } from '../environments/types.ts';
import type { EnvRole } from '../store/types.ts';
import { deriveRouteTable, sameRoutes } from './route-plan.ts';

const target = (color: Color, n: number) => ({ id: `${color}-${n}`, host: '127.0.0.1', port: 9000 + n + (color === 'green' ? 100 : 0) });
const instances = (c: Color) => [target(c, 0), target(c, 1)];

test('the live listener goes to the live colour; the preview to the candidate before the standby', () => {
  const t = deriveRouteTable({ blue: { role: 'live', version: 'v1' }, green: { role: 'candidate', version: 'v2' } }, instances, 7);
  assert.deepEqual(t, {
    revision: 7,
    live: { color: 'blue', version: 'v1', targets: instances('blue') },
    preview: { color: 'green', version: 'v2', targets: instances('green') },
  });
  const after = deriveRouteTable({ blue: { role: 'standby', version: 'v1' }, green: { role: 'live', version: 'v2' } }, instances, 8);
  assert.equal(after.live?.color, 'green');
  assert.equal(after.preview?.color, 'blue', 'the warm standby is previewable (rollback target)');
});

test('before the first release nothing is routed; a retired colour is never routed to', () => {
  assert.deepEqual(deriveRouteTable({ blue: { role: 'empty', version: null }, green: { role: 'empty', version: null } }, instances, 1), { revision: 1, live: null, preview: null });
  const t = deriveRouteTable({ blue: { role: 'retired', version: 'v1' }, green: { role: 'live', version: 'v2' } }, instances, 2);
  assert.equal(t.preview, null);
});

test('for any roles: live only to a live colour, preview never to live, retired or empty, targets exactly the instances', () => {
  const roles: EnvRole[] = ['live', 'standby', 'candidate', 'retired', 'empty'];
  const env = fc.record({ role: fc.constantFrom(...roles), version: fc.option(fc.stringMatching(/^v[0-9]{1,3}$/), { nil: null }) });
  fc.assert(fc.property(env, env, fc.nat(5), fc.nat(5), fc.nat(), (blue, green, nb, ng, revision) => {
    const envs = { blue, green };
    const of = (c: Color) => Array.from({ length: c === 'blue' ? nb : ng }, (_, i) => target(c, i));
    const t = deriveRouteTable(envs, of, revision);
    assert.equal(t.revision, revision);
    if (t.live) {
      assert.equal(envs[t.live.color].role, 'live');
      assert.deepEqual(t.live.targets, of(t.live.color));
    } else assert.ok(blue.role !== 'live' && green.role !== 'live');
    if (t.preview) {
      assert.ok(['candidate', 'standby'].includes(envs[t.preview.color].role));
      assert.deepEqual(t.preview.targets, of(t.preview.color));
      if (envs[t.preview.color].role === 'standby') assert.ok(blue.role !== 'candidate' && green.role !== 'candidate', 'a candidate wins the preview');
    }
    assert.ok(sameRoutes(t, { ...deriveRouteTable(envs, of, revision + 1), revision: 0 }), 'the same state derives the same routes');
  }), { numRuns: 500 });
});

test('sameRoutes ignores the revision and notices a moved target', () => {
  const envs = { blue: { role: 'live' as const, version: 'v1' }, green: { role: 'empty' as const, version: null } };
  const a = deriveRouteTable(envs, instances, 1);
  assert.ok(sameRoutes(a, deriveRouteTable(envs, instances, 9)));
  const moved = deriveRouteTable(envs, (c) => [target(c, 0), { ...target(c, 1), port: 1 }], 1);
  assert.equal(sameRoutes(a, moved), false);
  assert.equal(sameRoutes(a, deriveRouteTable({ ...envs, blue: { role: 'live', version: 'v2' } }, instances, 1)), false);
});

test('a gradual switch splits live traffic only to the candidate while something is live; mirroring likewise; sameRoutes sees both', () => {
  const envs = { blue: { role: 'live' as const, version: 'v1' }, green: { role: 'candidate' as const, version: 'v2' } };
  const split = { color: 'green' as const, share: 0.2, stickiness: { kind: 'cookie' as const, name: 'cutover_visitor' } };
  const mirror = { id: 'm1', sample: 0.1, methods: ['GET'], maxBodyBytes: 1024, headers: [], ignore: [], queue: 10, concurrency: 1, timeoutMs: 1_000 };
  const t = deriveRouteTable(envs, instances, 3, { split, mirror });
  assert.deepEqual(t.split, { route: { color: 'green', version: 'v2', targets: instances('green') }, share: 0.2, stickiness: split.stickiness });
  assert.equal(t.mirror, mirror);
  // The split colour must be the candidate, and a share of 0 is no split.
  assert.equal(deriveRouteTable(envs, instances, 3, { split: { ...split, color: 'blue' } }).split, undefined);
  assert.equal(deriveRouteTable(envs, instances, 3, { split: { ...split, share: 0 } }).split, undefined);
  assert.equal(deriveRouteTable({ ...envs, blue: { role: 'empty', version: null } }, instances, 3, { split, mirror }).mirror, undefined, 'nothing live: nothing to mirror');
  const plain = deriveRouteTable(envs, instances, 4);
  assert.ok(!sameRoutes(plain, t));
  assert.ok(!sameRoutes(t, deriveRouteTable(envs, instances, 5, { split: { ...split, share: 0.5 }, mirror })));
  assert.ok(!sameRoutes(t, deriveRouteTable(envs, instances, 5, { split, mirror: { ...mirror, id: 'm2' } })));
  assert.ok(sameRoutes(t, deriveRouteTable(envs, instances, 9, { split, mirror })));
});

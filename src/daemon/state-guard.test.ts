import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findingsOf, unaccounted, type MarkedProcess, type StateFacts } from './state-guard.ts';

const base: StateFacts = { stateDir: '/srv/.cutover', marker: null, empty: true, dbId: 'a1', generation: 0, logFiles: 0, snapshots: 0, unknown: [], stopUnknownInstances: false };
const marker = (dbId: string, generation: number) => ({ format: 1 as const, dbId, generation, updatedAt: Date.parse('2026-12-01T10:00:00Z'), live: { color: 'green', version: 'v2' } });
const proc = (color: string, version: string, pid = 100): MarkedProcess => ({ pid, color, instance: '0', version });

test('a fresh directory is accepted; an empty database with a used directory is not', () => {
  assert.deepEqual(findingsOf(base), []);
  assert.match(findingsOf({ ...base, logFiles: 2 }).join(), /holds no state, but this directory was used before: 2 instance log file\(s\)/);
  assert.match(findingsOf({ ...base, snapshots: 1 }).join(), /1 snapshot\(s\)/);
});

test('the marker catches an emptied, replaced or rolled-back database', () => {
  assert.deepEqual(findingsOf({ ...base, marker: marker('a1', 0) }), [], 'same database, same generation');
  assert.deepEqual(findingsOf({ ...base, empty: false, generation: 9, marker: marker('a1', 7) }), [], 'a database ahead of its marker (crash before the marker write)');
  assert.match(findingsOf({ ...base, dbId: 'b2', marker: marker('a1', 7) }).join(), /holds no state at all .* emptied, truncated or deleted/);
  assert.match(findingsOf({ ...base, empty: false, dbId: 'b2', generation: 3, marker: marker('a1', 7) }).join(), /another database \(id b2\)/);
  assert.match(findingsOf({ ...base, empty: false, generation: 5, marker: marker('a1', 7) }).join(), /older than the state last recorded: generation 5, but .* generation 7 .* when v2 was live on green/);
  assert.match(findingsOf({ ...base, marker: 'unreadable' }).join(), /unreadable/);
});

test('running instances are accounted for by their colour\'s release, the interrupted deployment or the held standby — else refused unless --stop-unknown-instances', () => {
  const envs = { blue: { version: 'v1' }, green: { version: 'v3' } };
  const procs = [proc('blue', 'v1', 1), proc('green', 'v3', 2), proc('green', 'v2', 3), proc('blue', 'v9', 4)];
  assert.deepEqual(unaccounted(envs, null, procs).map((p) => p.pid), [3, 4]);
  assert.deepEqual(unaccounted(envs, { color: 'blue', version: 'v9' }, procs).map((p) => p.pid), [3], 'the interrupted candidate');
  assert.deepEqual(unaccounted(envs, null, procs, null, { color: 'green', version: 'v2' }).map((p) => p.pid), [4], 'the standby held beside a candidate');
  assert.deepEqual(unaccounted(envs, null, procs, { color: 'green', version: 'v3' }).map((p) => p.pid), [2, 3, 4], 'the live release of a state replaced by an older snapshot is never taken for this one');
  const unknown = [proc('green', 'v2', 3)];
  assert.match(findingsOf({ ...base, empty: false, unknown }).join(), /1 running instance\(s\) .* not accounted for by state\.db: green-0 v2 \(pid 3\)/);
  assert.deepEqual(findingsOf({ ...base, empty: false, unknown, stopUnknownInstances: true }), []);
});

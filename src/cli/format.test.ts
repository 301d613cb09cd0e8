import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { EventRecord } from '../store/types.ts';
import { stepLine } from './format.ts';

const ev = (type: string, reason: string, o: Partial<EventRecord> = {}): EventRecord => ({
  seq: 1, time: 0, type, deployment: 'd-1', phase: 'migrate', actor: 'cutover', reason, durationMs: null, color: 'green', version: 'v2', data: null, ...o,
});

test('every migrations.* step of the migrate phase gets a line under it, with its outcome and duration', () => {
  const lines = [
    ev('migrations.lint', 'linted 1 pending migration(s): 0 error(s), 1 warning(s)', { data: { findings: [
      { file: 'migrations/002.expand.sql', line: 3, rule: 'missing-lock-timeout', severity: 'warning', message: 'takes a lock on a live table after this file cleared the lock timeout' },
      { file: 'migrations/002.expand.sql', line: 5, rule: 'create-trigger', severity: 'error', message: 'creates trigger t on products', suppressed: { reason: 'it only fills the new column' } },
    ] } }),
    ev('migrations.lint.overridden', 'database.lint is "warn": 1 lint error(s) overridden'),
    ev('migrations.compat.progress', 'shadow database shop_cshadow_1a2b3c4d: current schema'),
    ev('migrations.compat', 'compatibility run passed: old v1 and new v2 answer', { durationMs: 2_400, data: { outcome: 'passed' } }),
    ev('migrations.compat', 'compatibility run skipped: no release directory for the live version', { data: { outcome: 'skipped' } }),
    ev('migrations.applied', 'applied 002_add_title.expand.sql (1 statement(s), one transaction)', { durationMs: 12 }),
    ev('migrations.held', 'held 1 contract migration(s) until no release without them can take traffic: 004_drop_name.contract.sql'),
  ].map(stepLine);
  assert.deepEqual(lines, [
    // deploy prints the warnings and the suppressions with their reasons (issue 17)
    '      ! linted 1 pending migration(s): 0 error(s), 1 warning(s), 1 suppressed\n' +
      '          ! migrations/002.expand.sql:3: warning missing-lock-timeout takes a lock on a live table after this file cleared the lock timeout\n' +
      '          suppressed migrations/002.expand.sql:5 create-trigger creates trigger t on products (allowed: it only fills the new column)',
    '      ! database.lint is "warn": 1 lint error(s) overridden',
    '      • shadow database shop_cshadow_1a2b3c4d: current schema',
    '      ✓ compatibility run passed: old v1 and new v2 answer (2.4s)',
    '      – compatibility run skipped: no release directory for the live version',
    '      ✓ applied 002_add_title.expand.sql (1 statement(s), one transaction) (12ms)',
    '      • held 1 contract migration(s) until no release without them can take traffic: 004_drop_name.contract.sql',
  ]);
  assert.equal(stepLine(ev('migrations.lint', 'linted 2: 1 error(s)', { data: { findings: [{ severity: 'error' }] } }))?.trimStart().slice(0, 1), '✗');
  assert.equal(stepLine(ev('migrations.compat', 'compatibility run failed: old v1 got 500', { data: { outcome: 'failed' } }))?.trimStart().slice(0, 1), '✗');
});

test('events that are no step stay out of the list', () => {
  assert.equal(stepLine(ev('audit', 'someone did something')), null);
  assert.equal(stepLine(ev('instance.exit', 'blue-0 exited')), null);
});

test('a gradual switch shows each share as it takes effect and each step verdict under it', () => {
  assert.deepEqual([
    ev('switch.step', 'gradual switch of v2: 20 % of live traffic → green (step 1/3), sticky by cookie cutover_visitor', { phase: 'switch', data: { share: 0.2 } }),
    ev('analysis', 'step 1/3 (20 %) interval 1/2 passed: error rate 0% ≤ limit 1%', { phase: 'switch', data: { outcome: 'passed' } }),
    ev('switch.step.verdict', 'step 1/3 at 20 %: 2 interval(s) passed, 0 inconclusive', { phase: 'switch', data: { outcome: 'passed' } }),
    ev('switch.step.verdict', 'step 2/3 at 50 %: error rate 50% > limit 1%', { phase: 'switch', data: { outcome: 'failed' } }),
  ].map(stepLine), [
    '  ↗ gradual switch of v2: 20 % of live traffic → green (step 1/3), sticky by cookie cutover_visitor',
    '      ✓ step 1/3 (20 %) interval 1/2 passed: error rate 0% ≤ limit 1%',
    '      ✓ step 1/3 at 20 %: 2 interval(s) passed, 0 inconclusive',
    '      ✗ step 2/3 at 50 %: error rate 50% > limit 1%',
  ]);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LABELLED } from '../../test/fixtures/labelled-migrations.ts';
import { lintSql } from './lint.ts';
import { SchemaState } from './schema.ts';

const PREAMBLE = { postgres: "SET lock_timeout = '5s';\n", mysql: 'SET SESSION lock_wait_timeout = 5;\n' } as const;

test('the labelled set has at least 40 cases on both engines, safe and unsafe', () => {
  assert.ok(LABELLED.length >= 40);
  for (const engine of ['postgres', 'mysql'] as const) {
    assert.ok(LABELLED.some((c) => c.engine === engine && c.expect === 'safe'));
    assert.ok(LABELLED.some((c) => c.engine === engine && c.expect !== 'safe'));
  }
});

for (const c of LABELLED) {
  test(`labelled: ${c.name} → ${c.expect === 'safe' ? 'safe' : c.expect.join(', ')}`, async () => {
    const schema = new SchemaState();
    if (c.schema !== undefined) await lintSql(c.schema, { file: '000_base.sql', engine: c.engine, schema });
    const sql = (c.noPreamble === true ? '' : PREAMBLE[c.engine]) + c.sql;
    const report = await lintSql(sql, { file: 'case.sql', engine: c.engine, phase: c.phase ?? 'expand', schema });
    const shown = report.findings.map((f) => `${f.severity} ${f.rule}: ${f.message}`).join('\n');
    if (c.expect === 'safe') {
      const alarms = report.findings.filter((f) => f.severity !== 'info');
      assert.deepEqual(alarms, [], `false alarm:\n${shown}`);
      if ((c.phase ?? 'expand') === 'expand') assert.equal(report.findings.length, 0, shown);
    } else {
      assert.deepEqual([...new Set(report.findings.map((f) => f.rule))].sort(), [...c.expect].sort(), shown);
    }
  });
}

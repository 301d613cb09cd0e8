/**
 * The error table (src/lib/errors.ts) end to end: every code reaches an admin API client with its
 * documented HTTP status (a real daemon, a real HTTP request), comes back out of the client with
 * the same code, ends a CLI command with its documented exit code, and stands in README.md.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { exitCodeFor } from '../src/cli/context.ts';
import { CutoverError, ERROR_CODES, EXIT, isErrorCode, type ErrorCode } from '../src/lib/errors.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { ROOT, TEST_TOKEN, freePort, freePorts, staticConfigYaml, tempDir } from './helpers.ts';

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

test('every error code has an HTTP status and one of the contract exit codes', () => {
  const exits: number[] = Object.values(EXIT);
  for (const code of CODES) {
    const spec = ERROR_CODES[code];
    assert.ok(Number.isInteger(spec.http) && spec.http >= 400 && spec.http <= 599, `${code}: HTTP ${spec.http}`);
    assert.ok(exits.includes(spec.exit) && (spec.exit as number) !== EXIT.OK, `${code}: exit ${spec.exit}`);
    assert.equal(exitCodeFor(new CutoverError(code, 'x')), spec.exit, code);
  }
  assert.equal(exitCodeFor(new Error('not ours')), EXIT.FAILED);
  assert.equal(isErrorCode('CUTOVER_ERR_NOPE'), false);
  assert.equal(isErrorCode('toString'), false, 'names of Object.prototype are no codes');
});

test('the admin API answers every code with its status from the table, and the client gives the code back', { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const ports = await freePorts();
  const config = parseConfig(staticConfigYaml(ports, await freePort(), await freePort()), { file: 'cutover.yaml', baseDir: dir });
  const daemon = await Daemon.start(config, {
    logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN },
    extras: {
      // A route that fails with the code it is asked for, as a plugin route or the controller would.
      routes: async (ctx) => {
        if (ctx.path !== '/fail') return false;
        const code = ctx.query.get('code');
        if (code === 'plain') throw new Error('a detail for the log only');
        if (!isErrorCode(code)) return false;
        throw new CutoverError(code, `failing with ${code}`, { details: { asked: code } });
      },
    },
  });
  t.after(() => daemon.stop({ stopInstances: true }));
  const client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN });
  t.after(() => client.close());
  for (const code of CODES) {
    const res = await request(`${daemon.adminUrl()}/api/v1/fail?code=${code}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    const body = await res.body.json() as { error: { code: string; message: string; details: Record<string, unknown> } };
    assert.equal(res.statusCode, ERROR_CODES[code].http, `${code} answers ${ERROR_CODES[code].http}`);
    assert.deepEqual(body.error, { code, message: `failing with ${code}`, details: { asked: code } });
    await assert.rejects(client.call('GET', `/fail?code=${code}`), (err: unknown) => err instanceof CutoverError && err.code === code && exitCodeFor(err) === ERROR_CODES[code].exit);
  }
  // Not a CutoverError: 500 INTERNAL, the message kept out of the answer.
  const res = await request(`${daemon.adminUrl()}/api/v1/fail?code=plain`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  assert.equal(res.statusCode, 500);
  const text = await res.body.text();
  assert.equal(JSON.parse(text).error.code, 'CUTOVER_ERR_INTERNAL');
  assert.ok(!text.includes('detail for the log'), text);
});

test('README.md documents every code with the same HTTP status and exit code', () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const rows = new Map<string, { http: number; exit: number }>();
  for (const m of readme.matchAll(/^\| `(CUTOVER_ERR_[A-Z_]+)` \| (\d{3}) \| (\d) \|/gm)) rows.set(m[1], { http: Number(m[2]), exit: Number(m[3]) });
  assert.deepEqual([...rows.keys()].sort(), [...CODES].sort(), 'one README row per code');
  for (const code of CODES) assert.deepEqual(rows.get(code), { http: ERROR_CODES[code].http, exit: ERROR_CODES[code].exit }, code);
});

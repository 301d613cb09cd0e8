/**
 * Nothing secret leaves the daemon (issue #6): a deployment whose instances get a secret through
 * `environments.process.env`, an admin token, failed and refused calls — then the daemon's whole
 * log (stdout and stderr, debug level), every event, every API answer and error, and the raw
 * state database are searched for the secret and the token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { SHOP_V1, SHOP_V2, cli, configYaml, freePorts, instancesOf, killAll, startDaemonProcess, tempDir, writeConfig } from './helpers.ts';

const SECRET = 'sk_live_9f8e7d6c5b4a39281706SECRET';
const TOKEN = 'adm-token-7c1d0e9f8a2b3c4dTOKEN';

test('a secret in environments.process.env and the admin token appear in no log line, event, API answer or error', async () => {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports, { extra: '' }).replace('    command: node server.js', `    command: node server.js\n    env:\n      PAYMENT_API_KEY: ${SECRET}\n      DATABASE_URL: postgres://shop:${SECRET}@db/shop`));
  const env = { CUTOVER_TOKEN: TOKEN, CUTOVER_LOG_LEVEL: 'debug' };
  const daemon = await startDaemonProcess(dir, env);
  const answers: string[] = [];
  const admin = `http://127.0.0.1:${ports.admin}/api/v1`;
  const api = async (method: 'GET' | 'POST', p: string, o: { token?: string; body?: string } = {}) => {
    const res = await request(`${admin}${p}`, { method, headers: { authorization: `Bearer ${o.token ?? TOKEN}`, 'content-type': 'application/json' }, body: o.body });
    const text = await res.body.text();
    answers.push(`${method} ${p} ${res.statusCode} ${JSON.stringify(res.headers)} ${text}`);
    return { status: res.statusCode, text };
  };
  try {
    const run = (args: string[]) => cli(args, { cwd: dir, env: { CUTOVER_TOKEN: TOKEN } }).then((r) => { answers.push(r.stdout, r.stderr); return r; });
    assert.equal((await run(['deploy', 'v1', '--path', SHOP_V1])).code, 0);
    assert.equal((await run(['deploy', 'v2', '--path', SHOP_V2])).code, 0);
    assert.notEqual((await run(['deploy', 'v3', '--path', path.join(dir, 'missing')])).code, 0, 'a failed deployment');
    assert.equal((await run(['rollback'])).code, 0);
    await run(['status', '--json']);
    await run(['history', '--json']);
    // Refused and malformed calls: their errors must not quote the token either.
    assert.equal((await api('GET', '/status', { token: `${TOKEN}x` })).status, 401);
    assert.equal((await api('GET', '/status', { token: TOKEN.slice(0, -1) })).status, 401);
    assert.equal((await api('POST', '/deployments', { body: '{"version":' })).status, 400);
    assert.equal((await api('POST', '/promote', { body: '{"force":1}' })).status, 400);
    await api('GET', '/status');
    await api('GET', '/history?limit=100');
    const hist = JSON.parse((await api('GET', '/history?limit=100')).text) as { deployments: { id: string }[] };
    // Each deployment with all its events, as the API serves them.
    for (const d of hist.deployments) await api('GET', `/deployments/${d.id}`);
    await api('GET', '/nope');
    const metrics = await request(`http://127.0.0.1:${ports.admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    answers.push(await metrics.body.text());
  } finally {
    await daemon.stop('SIGTERM');
  }
  try {
    const log = daemon.output();
    assert.ok(log.length > 1_000 && /"level":20/.test(log), 'the debug log was captured');
    assert.match(log, /PAYMENT_API_KEY|startTimeout|instances started/, 'the log talks about the instances');
    const leaks = (where: string, text: string) => {
      assert.ok(!text.includes(SECRET), `the secret appears in ${where}`);
      assert.ok(!text.includes(TOKEN), `the token appears in ${where}`);
      assert.ok(!text.includes(TOKEN.slice(0, -1)), `a prefix of the token appears in ${where}`);
    };
    leaks('the daemon log', log);
    leaks('API answers, errors and CLI output', answers.join('\n'));
    // Events as stored, and everything else the daemon wrote under its state directory, except
    // the instances' own logs (the application's output is the application's business).
    const stateFiles = readdirSync(stateDir).filter((f) => f.startsWith('state.db'));
    assert.ok(stateFiles.length > 0);
    for (const f of stateFiles) leaks(f, readFileSync(path.join(stateDir, f)).toString('latin1'));
    assert.ok(!readdirSync(stateDir).includes('admin.token'), 'with CUTOVER_TOKEN set, no token file is written');
  } finally {
    killAll(instancesOf(stateDir));
    cleanup();
  }
});

/** The environment of a running process, from /proc. */
function environOf(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) out.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return out;
}

test('instances and command gates get an allow-list of the daemon environment: never CUTOVER_TOKEN or a webhook secret (issue #15)', async () => {
  const { dir, cleanup } = tempDir();
  const stateDir = path.join(dir, '.cutover');
  const gateEnvFile = path.join(dir, 'gate-env.txt');
  const ports = await freePorts();
  const HOOK_SECRET = 'whsec-5b6c7d8e9f0a1b2cHOOK';
  const extra = [
    'gates:',
    `  - { name: env-dump, command: "env > ${gateEnvFile}" }`,
    'notifications:',
    '  - { url: "http://127.0.0.1:9/hook", secret: "${SHOP_HOOK_SECRET}", retries: 0 }',
  ].join('\n');
  writeConfig(dir, configYaml(ports, { instances: 1, extra }).replace('    command: node server.js', '    command: node server.js\n    inheritEnv: [SHOP_LISTED, SHOP_PREFIX_*, SHOP_HOOK_SECRET]\n    env: { SHOP_EXPLICIT: "from-config" }'));
  const daemon = await startDaemonProcess(dir, {
    CUTOVER_TOKEN: TOKEN, SHOP_HOOK_SECRET: HOOK_SECRET, SHOP_LISTED: 'listed', SHOP_PREFIX_A: 'a', SHOP_UNLISTED: 'unlisted',
    CUTOVER_WEBHOOK_SECRET: 'cutover-own-variable-value', LC_ALL: 'C.UTF-8', TZ: 'UTC',
  });
  try {
    // (The CLI reads the same config, so it needs the variable the config names too.)
    const r = await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: dir, env: { CUTOVER_TOKEN: TOKEN, SHOP_HOOK_SECRET: HOOK_SECRET } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const pids = instancesOf(stateDir);
    assert.equal(pids.length, 1);
    const env = environOf(pids[0]);
    for (const gotten of [env, new Map(readFileSync(gateEnvFile, 'utf8').split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]))]) {
      assert.ok(![...gotten.values()].some((v) => v.includes(TOKEN)), 'no variable holds the admin token');
      assert.ok(![...gotten.values()].some((v) => v.includes(HOOK_SECRET)), 'no variable holds the webhook secret, even though it is listed in inheritEnv');
      assert.equal(gotten.get('CUTOVER_TOKEN'), undefined);
      assert.equal(gotten.get('CUTOVER_WEBHOOK_SECRET'), undefined, "Cutover's own variables never pass");
      assert.equal(gotten.get('SHOP_UNLISTED'), undefined, 'not on the allow-list');
      assert.equal(gotten.get('SHOP_LISTED'), 'listed');
      assert.equal(gotten.get('SHOP_PREFIX_A'), 'a');
      assert.equal(gotten.get('LC_ALL'), 'C.UTF-8');
      assert.equal(gotten.get('TZ'), 'UTC');
      assert.ok(gotten.get('PATH'), 'PATH passes');
    }
    assert.equal(env.get('SHOP_EXPLICIT'), 'from-config');
    assert.equal(env.get('CUTOVER_VERSION'), 'v1', 'what Cutover sets for the instance');
  } finally {
    await daemon.stop('SIGTERM');
    killAll(instancesOf(stateDir));
    cleanup();
  }
});

test('inheritEnv naming a Cutover variable is a config error at its line', async () => {
  const { parseConfig } = await import('../src/config/load.ts');
  const yaml = 'environments:\n  process:\n    command: node server.js\n    inheritEnv: [HOME, CUTOVER_TOKEN]\n';
  assert.throws(() => parseConfig(yaml, { file: 'cutover.yaml', baseDir: '/tmp' }), (err: Error) => {
    assert.match(err.message, /^cutover\.yaml:4: environments\.process\.inheritEnv\[1\]: Cutover's own variables/);
    return true;
  });
});

/**
 * Issue 16, "the first hour with Cutover": what a new user meets from clone to a rollback of their
 * own service. The real `cutover` binary (and the machine's own old Node.js where there is one)
 * against real daemons on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../src/config/load.ts';
import { Daemon } from '../src/daemon/daemon.ts';
import { silentLogger } from '../src/lib/logger.ts';
import type { DeploymentRecord } from '../src/store/types.ts';
import { BIN, ROOT, SHOP_V1, SHOP_V2, TEST_TOKEN, cli, configYaml, freePorts, instancesOf, killAll, tempDir, waitFor, writeConfig } from './helpers.ts';

/** An in-process daemon on a cutover.yaml in a temp dir; the CLI finds it from that file. */
async function withDaemon(extra: string, fn: (dir: string, d: Daemon) => Promise<void>, processKeys: Record<string, string> = {}): Promise<void> {
  const t = tempDir();
  const ports = await freePorts();
  let text = configYaml(ports, { startTimeout: '30s', drainTimeout: '1s' });
  for (const [k, v] of Object.entries(processKeys)) text = text.replace('    startTimeout:', `    ${k}: ${v}\n    startTimeout:`);
  writeConfig(t.dir, `${text}\n${extra}`);
  const config = parseConfig(readFileSync(path.join(t.dir, 'cutover.yaml'), 'utf8'), { file: 'cutover.yaml', baseDir: t.dir });
  const d = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
  try {
    await fn(t.dir, d);
  } finally {
    await d.stop({ stopInstances: true });
    killAll(instancesOf(config.stateDir));
    t.cleanup();
  }
}

test('bin/cutover.js on an unsupported Node.js says which one it needs and exits 2', { timeout: 20_000 }, (t) => {
  // The machine's own Node.js (v20 here): the README's first stumble.
  const old = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p) && Number(spawnSync(p, ['-p', 'process.versions.node.split(".")[0]']).stdout.toString()) < 22);
  if (!old) { t.skip('no Node.js older than 22 on this machine'); return; }
  const version = spawnSync(old, ['--version']).stdout.toString().trim();
  for (const args of [['--help'], ['status'], ['up']]) {
    const r: SpawnSyncReturns<string> = spawnSync(old, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.split('\n')[0], `Cutover needs Node.js ≥ 22.19 (found ${version}).`);
    assert.doesNotMatch(r.stderr, /ERR_UNKNOWN_FILE_EXTENSION|at .*\(node:/, 'no stack trace');
    assert.equal(r.stdout, '');
  }
});

test('package.json pins a supported Node.js for npm run / npx, and approves its install script', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string>; allowScripts?: Record<string, boolean> };
  const pinned = pkg.devDependencies.node;
  assert.match(pinned, /^\d+\.\d+\.\d+$/, 'an exact version');
  assert.ok(Number(pinned.split('.')[0]) >= 24);
  assert.equal(pkg.allowScripts?.node, true, 'its preinstall (which fetches the binary) is approved explicitly');
  // npm ci put it first on PATH for scripts: node_modules/.bin/node runs that version.
  const bin = path.join(ROOT, 'node_modules', '.bin', 'node');
  assert.ok(existsSync(bin), 'node_modules/.bin/node');
  assert.equal(spawnSync(bin, ['--version']).stdout.toString().trim(), `v${pinned}`);
});

test('a missing config file is named without a line number; an unknown setting gets "did you mean"', { timeout: 30_000 }, async () => {
  const t = tempDir();
  try {
    const missing = await cli(['status', '-c', 'nope.yaml'], { cwd: t.dir });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^nope\.yaml: config file not found/m);
    assert.doesNotMatch(missing.stderr, /:0:/);
    writeConfig(t.dir, 'router:\n  listn: 127.0.0.1:8080\nenvironments:\n  process:\n    command: node server.js\n    instanses: 2\n');
    const typo = await cli(['status'], { cwd: t.dir });
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /^cutover\.yaml:2: router\.listn: unknown setting "listn" \(did you mean "listen"\?\)$/m);
    assert.match(typo.stderr, /^cutover\.yaml:6: environments\.process\.instanses: unknown setting "instanses" \(did you mean "instances"\?\)$/m);
    const json = await cli(['status', '--json'], { cwd: t.dir });
    assert.equal(json.code, 2);
    const body = JSON.parse(json.stdout) as { error: { code: string; details: { problems: { line: number; field: string }[] } } };
    assert.equal(body.error.code, 'CUTOVER_ERR_CONFIG');
    assert.deepEqual(body.error.details.problems.map((p) => [p.line, p.field]), [[2, 'router.listn'], [6, 'environments.process.instanses']]);
  } finally {
    t.cleanup();
  }
});

test('deploy --json reports errors as JSON on stdout, with the exit code of the contract', { timeout: 30_000 }, async () => {
  const t = tempDir();
  try {
    const ports = await freePorts(); // nothing listens on the admin port
    writeConfig(t.dir, configYaml(ports));
    const r = await cli(['deploy', 'v1', '--path', SHOP_V1, '--json'], { cwd: t.dir });
    assert.equal(r.code, 3);
    const body = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'CUTOVER_ERR_UNREACHABLE');
    assert.equal(r.stderr, '');
  } finally {
    t.cleanup();
  }
});

test('a deploy without --path under the process provider is refused (exit 2), never the working directory', { timeout: 60_000 }, async () => {
  await withDaemon('', async (dir, d) => {
    // The config directory holds a server.js-less cutover.yaml: the old default would have deployed it.
    const r = await cli(['deploy', 'v1'], { cwd: dir });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /the process provider needs the release directory: pass --path DIR, or set environments\.process\.releaseDir/);
    const j = await cli(['deploy', 'v1', '--json'], { cwd: dir });
    assert.equal(j.code, 2);
    assert.equal((JSON.parse(j.stdout) as { error: { code: string } }).error.code, 'CUTOVER_ERR_RELEASE_PATH');
    assert.equal(d.controller.history().length, 0, 'nothing was started or recorded');
    assert.equal(instancesOf(d.config.stateDir).length, 0);
  });
});

test('environments.process.releaseDir finds the release by version; history marks a release that was rolled back', { timeout: 90_000 }, async () => {
  await withDaemon('', async (dir, d) => {
    mkdirSync(path.join(dir, 'releases'));
    cpSync(SHOP_V1, path.join(dir, 'releases', 'v1'), { recursive: true });
    cpSync(SHOP_V2, path.join(dir, 'releases', 'v2'), { recursive: true });
    const missing = await cli(['deploy', 'v9'], { cwd: dir });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /release directory .*releases\/v9"? \(environments\.process\.releaseDir for v9\) does not exist/);
    for (const v of ['v1', 'v2']) {
      const r = await cli(['deploy', v], { cwd: dir });
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    assert.deepEqual(d.controller.history().map((x) => x.path), [path.join(dir, 'releases', 'v2'), path.join(dir, 'releases', 'v1')]);
    assert.equal((await cli(['rollback'], { cwd: dir })).code, 0);
    const text = await cli(['history'], { cwd: dir });
    assert.match(text.stdout, /\bv2 +green +succeeded, rolled back\b.*rolled back by /);
    assert.match(text.stdout, /\bv1 +blue +succeeded +/);
    const h = JSON.parse((await cli(['history', '--json'], { cwd: dir })).stdout) as { deployments: DeploymentRecord[] };
    assert.equal(h.deployments[0].version, 'v2');
    assert.equal(h.deployments[0].status, 'succeeded', 'the pipeline outcome stays');
    assert.ok(h.deployments[0].rolledBack && h.deployments[0].rolledBack.actor.length > 0);
    assert.equal(h.deployments[1].rolledBack ?? null, null);
  }, { releaseDir: './releases/{version}' });
});

test('`cutover status | head` — a reader that went away ends a client command quietly, no EPIPE stack', { timeout: 60_000 }, async () => {
  await withDaemon('', async (dir) => {
    for (const args of [['status'], ['history'], ['status', '--json'], ['--help']]) {
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout.destroy(); // the reader is gone before the first write: every write is EPIPE
        let stderr = '';
        child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
        child.on('close', (code) => resolve({ code, stderr }));
      });
      assert.equal(r.stderr, '', `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.code, 0, args.join(' '));
    }
  });
});

test('on a terminal the daemon logs readable lines under its start banner, not JSON', { timeout: 60_000 }, async (t) => {
  if (!existsSync('/usr/bin/script')) { t.skip('no script(1) to give the daemon a terminal'); return; }
  const tmp = tempDir();
  const ports = await freePorts();
  writeConfig(tmp.dir, configYaml(ports));
  // script(1) runs `cutover up` on a pseudo-terminal, as a user's shell would.
  const child = spawn('/usr/bin/script', ['-qec', `${process.execPath} ${BIN} up`, '/dev/null'], { cwd: tmp.dir, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_LOG_LEVEL: 'info' }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  try {
    await waitFor(() => out.includes('admin    http'), { timeoutMs: 30_000, what: `the banner:\n${out}` });
    await new Promise((r) => setTimeout(r, 300));
    // eslint-disable-next-line no-control-regex
    const lines = out.replace(/\x1b\[[0-9;]*m/g, '').split(/\r?\n/).filter((l) => l.trim() !== '');
    assert.ok(lines.some((l) => /INFO.*cutover is up/.test(l)), out);
    assert.ok(lines.every((l) => !l.trimStart().startsWith('{')), `no JSON lines on a terminal:\n${out}`);
    assert.ok(lines.some((l) => /^cutover test is up$/.test(l)), 'the banner');
  } finally {
    try { process.kill(-child.pid!, 'SIGTERM'); } catch { /* gone */ }
    await new Promise((r) => { if (child.exitCode !== null) r(null); else child.once('exit', r); });
    tmp.cleanup();
  }
});

test('README and docs: every relative link and picture points at a file that exists', () => {
  const files = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const broken: string[] = [];
  for (const f of files) {
    const text = readFileSync(path.join(ROOT, f), 'utf8').replace(/```[\s\S]*?```/g, '');
    for (const m of text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)) {
      const target = m[1].split('#')[0];
      if (target === '' || /^[a-z]+:/i.test(target)) continue;
      if (!existsSync(path.resolve(ROOT, path.dirname(f), target))) broken.push(`${f}: ${m[1]}`);
    }
  }
  assert.deepEqual(broken, []);
});

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { isCutoverError } from '../lib/errors.ts';
import { ProcessProvider, type ProcessProviderOptions } from './process-provider.ts';
import type { Instance } from './types.ts';
import { FIXTURE_COMMAND, FIXTURE_DAEMON, FIXTURE_SERVER, getJson, isPidAlive, killMarked, markedLeaders, tempRoot, waitFor } from '../../test/fixtures/environments/helpers.ts';

const tmp = tempRoot('cutover-env-');
const foreign: number[] = [];

after(async () => {
  await killMarked(tmp.root);
  for (const pid of foreign) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  tmp.remove();
});

function provider(opts: Partial<ProcessProviderOptions> & { stateDir?: string } = {}): ProcessProvider {
  return new ProcessProvider({ stateDir: opts.stateDir ?? tmp.dir('state'), command: FIXTURE_COMMAND, instances: 2, stopGraceMs: 2_000, ...opts });
}

const answers = (i: Instance) => waitFor(`${i.id} to answer`, () => getJson(i.port));

describe('process provider', () => {
  test('checkRelease needs an existing release directory, and says which field is wrong', () => {
    const p = provider();
    const release = tmp.dir('release-check');
    assert.equal(p.checkRelease(release, 'v1'), release);
    assert.throws(() => p.checkRelease(null, 'v1'), (e: unknown) => isCutoverError(e, 'CUTOVER_ERR_RELEASE_PATH') && e.details?.field === 'path');
    assert.throws(() => p.checkRelease(path.join(release, 'missing'), 'v1'), (e: unknown) => isCutoverError(e, 'CUTOVER_ERR_RELEASE_PATH') && /does not exist/.test(e.message));
    assert.throws(() => p.checkRelease(FIXTURE_SERVER, 'v1'), (e: unknown) => isCutoverError(e, 'CUTOVER_ERR_RELEASE_PATH'), 'a file is not a directory');
  });

  test('checkRelease without a path fills environments.process.releaseDir with the version, and names it when missing', () => {
    const root = tmp.dir('releases');
    const v7 = path.join(root, 'v7');
    mkdirSync(v7);
    const p = provider({ releaseDir: path.join(root, '{version}') });
    assert.equal(p.checkRelease(null, 'v7'), v7);
    assert.throws(() => p.checkRelease(null, 'v8'), (e: unknown) => isCutoverError(e, 'CUTOVER_ERR_RELEASE_PATH') && /\/v8"? \(environments\.process\.releaseDir for v8\) does not exist/.test(e.message));
    assert.equal(p.checkRelease(v7, 'v8'), v7, 'an explicit path wins over the template');
  });

  test('start with given slots runs exactly those instance indices (an agent\'s share of a colour); bad slots start nothing', async () => {
    const p = provider();
    const dir = tmp.dir('slots-v1');
    await assert.rejects(p.start('blue', { version: 'v1', path: dir }, { slots: [1, 1] }), (e: unknown) => isCutoverError(e, 'CUTOVER_ERR_PROVISION') && /slots \[1,1\]/.test(e.message));
    assert.deepEqual(p.instances('blue'), []);
    const started = await p.start('blue', { version: 'v1', path: dir }, { slots: [1, 3] });
    assert.deepEqual(started.map((i) => i.id), ['blue-1', 'blue-3']);
    await Promise.all(started.map(answers));
    await assert.rejects(p.start('blue', { version: 'v2', path: dir }, { slots: [-1] }), (e: unknown) => isCutoverError(e, 'CUTOVER_ERR_PROVISION'));
    assert.deepEqual(p.instances('blue').map((i) => i.pid), started.map((i) => i.pid), 'a refused start leaves the running ones running');
    await p.stop('blue');
    assert.ok(started.every((i) => !isPidAlive(i.pid as number)));
  });

  test('hold keeps a colour running beside a new start on other slots; restoreHeld gives it back; stopHeld stops it', async () => {
    const p = provider();
    const changes: string[][] = [];
    p.on('instances-changed', (_c, list) => changes.push(list.map((i) => i.id)));
    const old = await p.start('green', { version: 'v1', path: tmp.dir('hold-v1') });
    await Promise.all(old.map(answers));
    const held = await p.hold('green');
    assert.deepEqual(held.map((i) => i.pid), old.map((i) => i.pid));
    assert.deepEqual(p.instances('green'), [], 'held instances are not the colour\'s instances');
    const next = await p.start('green', { version: 'v2', path: tmp.dir('hold-v2') });
    assert.deepEqual(next.map((i) => i.id), ['green-2', 'green-3'], 'the slots the held ones do not use');
    await Promise.all(next.map(answers));
    assert.ok(old.every((i) => isPidAlive(i.pid as number)), 'the held instances still run beside the new ones');
    assert.ok(existsSync(p.logPath('green-2')) && existsSync(p.logPath('green-0')), 'each has its own log file');

    const back = await p.restoreHeld('green');
    assert.deepEqual(back.map((i) => [i.id, i.pid]), old.map((i) => [i.id, i.pid]), 'the very same processes');
    assert.ok(next.every((i) => !isPidAlive(i.pid as number)), 'the new release is stopped');
    assert.deepEqual(changes.at(-1), ['green-0', 'green-1']);

    await p.hold('green');
    const third = await p.start('green', { version: 'v3', path: tmp.dir('hold-v3') });
    await p.stopHeld('green');
    assert.ok(old.every((i) => !isPidAlive(i.pid as number)), 'stopHeld stops the held instances');
    assert.deepEqual(p.held('green'), []);
    assert.deepEqual(p.instances('green').map((i) => i.pid), third.map((i) => i.pid), 'the new release runs on');
    await p.stop('green');
  });

  test('a held instance that crashes is restarted (it is a warm standby) and reported as held-changed', async () => {
    const p = provider({ instances: 1, restartBackoff: { initialMs: 50, maxMs: 100 } });
    const [a] = await p.start('blue', { version: 'v1', path: tmp.dir('held-crash') });
    await answers(a);
    await p.hold('blue');
    const changed = once(p, 'held-changed');
    process.kill(a.pid as number, 'SIGKILL');
    const [color, list] = (await changed) as [string, Instance[]];
    assert.equal(color, 'blue');
    assert.notEqual(list[0].pid, a.pid);
    assert.deepEqual(p.instances('blue'), [], 'still held, not the colour\'s instances');
    await p.stopHeld('blue');
    assert.equal(isPidAlive(list[0].pid as number), false);
  });

  test('starts each instance with PORT, CUTOVER_* and configured env, in the release directory, logging to a file', async () => {
    const p = provider({ env: { FIXTURE_EXTRA: 'hello', CUTOVER_COLOR: 'not-this' } });
    const release = tmp.dir('release-v1');
    const changed: Instance[][] = [];
    p.on('instances-changed', (_c, list) => changed.push(list));
    const instances = await p.start('green', { version: 'v1', path: release });

    assert.deepEqual(instances.map((i) => i.id), ['green-0', 'green-1']);
    assert.notEqual(instances[0].port, instances[1].port);
    for (const inst of instances) {
      const body = await answers(inst);
      assert.deepEqual(body, {
        color: 'green', version: 'v1', instance: String(inst.index), pid: inst.pid, cwd: release, extra: 'hello',
      });
      assert.equal(inst.host, '127.0.0.1');
      assert.equal(inst.path, release);
    }
    assert.equal(changed.length, 1);
    assert.deepEqual(readdirSync(path.join(p.stateDir, 'logs')).sort(), ['green-0.log', 'green-1.log']);
    assert.match(readFileSync(p.logPath('green-0'), 'utf8'), /listening on \d+/);

    await p.stop('green');
    assert.deepEqual(p.instances('green'), []);
    assert.deepEqual(await markedLeaders(p.stateDir), []);
    assert.deepEqual(changed.at(-1), []);
  });

  test('stop sends SIGTERM to the process group; one that ignores it is SIGKILLed after the grace period', async () => {
    const graceMs = 400;
    const polite = provider({ instances: 1, stopGraceMs: 5_000 });
    const [a] = await polite.start('blue', { version: 'v1', path: tmp.dir('rel') });
    await answers(a);
    let t0 = Date.now();
    await polite.stop('blue');
    assert.ok(Date.now() - t0 < 2_000, 'a polite instance exits on SIGTERM, well before the grace period');
    assert.match(readFileSync(polite.logPath('blue-0'), 'utf8'), /got SIGTERM/);

    const stubborn = provider({ instances: 1, stopGraceMs: graceMs, env: { FIXTURE_IGNORE_SIGTERM: '1' } });
    const [b] = await stubborn.start('blue', { version: 'v1', path: tmp.dir('rel') });
    await answers(b);
    t0 = Date.now();
    await stubborn.stop('blue');
    const took = Date.now() - t0;
    assert.ok(took >= graceMs && took < graceMs + 1_500, `stop took ${took}ms`);
    assert.match(readFileSync(stubborn.logPath('blue-0'), 'utf8'), /got SIGTERM/);
    assert.equal(isPidAlive(b.pid as number), false);
  });

  test('a crashed instance is restarted with doubling backoff on the same port, with events, until stopped', async () => {
    const p = provider({ instances: 1, env: { FIXTURE_CRASH_AFTER_MS: '30' }, restartBackoff: { initialMs: 100, maxMs: 300 } });
    const exits: Array<{ code: number | null }> = [];
    const restarts: Array<{ attempt: number; delayMs: number; pid: number | null; port: number }> = [];
    p.on('instance-exit', (_i, info) => exits.push(info));
    p.on('instance-restart', (i, info) => restarts.push({ ...info, pid: i.pid, port: i.port }));
    p.setAutoRestart('blue', true);
    const [first] = await p.start('blue', { version: 'v1', path: tmp.dir('rel') });

    await waitFor('three restarts', () => restarts.length >= 3, 8_000);
    await p.stop('blue');
    const after = restarts.length;
    assert.deepEqual(restarts.slice(0, 3).map((r) => [r.attempt, r.delayMs]), [[1, 100], [2, 200], [3, 300]]);
    assert.ok(exits.length >= 3 && exits.every((e) => e.code === 3), JSON.stringify(exits));
    assert.equal(new Set([first.pid, ...restarts.map((r) => r.pid)]).size, restarts.length + 1, 'each restart is a new process');
    assert.ok(restarts.every((r) => r.port === first.port), 'the port is reused when free');
    await sleep(400);
    assert.equal(restarts.length, after, 'no restart after stop');
    assert.deepEqual(await markedLeaders(p.stateDir), []);
  });

  test('the backoff starts over when an instance stayed up longer than resetAfterMs', async () => {
    const p = provider({ instances: 1, env: { FIXTURE_CRASH_AFTER_MS: '150' }, restartBackoff: { initialMs: 50, maxMs: 1_000, resetAfterMs: 100 } });
    const delays: number[] = [];
    p.on('instance-restart', (_i, info) => delays.push(info.delayMs));
    p.setAutoRestart('blue', true);
    await p.start('blue', { version: 'v1', path: tmp.dir('rel') });
    await waitFor('two restarts', () => delays.length >= 2, 5_000);
    await p.stop('blue');
    assert.deepEqual(delays.slice(0, 2), [50, 50]);
  });

  test('an instance that exits at once stays listed with its exit code and log tail, and is not restarted while autoRestart is off', async () => {
    const p = provider({ instances: 1, env: { FIXTURE_EXIT_AT_START: '7' }, restartBackoff: { initialMs: 50, maxMs: 50 } });
    let restarted = false;
    p.on('instance-restart', () => { restarted = true; });
    const exited = once(p, 'instance-exit');
    await p.start('green', { version: 'v2', path: tmp.dir('rel') });
    const [inst, info] = await exited;
    assert.equal(inst.id, 'green-0');
    assert.deepEqual(info, { code: 7, signal: null });
    await sleep(200);
    assert.equal(restarted, false);
    assert.deepEqual(p.instances('green').map((i) => i.id), ['green-0']);
    assert.equal(p.isRunning('green-0'), false);
    assert.equal(p.lastExit('green-0')?.code, 7);
    const tail = await p.logTail('green-0', 5);
    assert.ok(tail.some((l) => l.includes('boom: cannot start')), tail.join('\n'));
    assert.match(tail.at(-1) ?? '', /exited code=7/);
    await p.stop('green');
  });

  test('starting a colour that already runs stops its instances first: no duplicates', async () => {
    const p = provider();
    const v1 = await p.start('blue', { version: 'v1', path: tmp.dir('rel') });
    await Promise.all(v1.map(answers));
    const v2 = await p.start('blue', { version: 'v2', path: tmp.dir('rel') });
    for (const old of v1) assert.equal(isPidAlive(old.pid as number), false);
    assert.deepEqual((await markedLeaders(p.stateDir)).sort(), v2.map((i) => i.pid).sort());
    assert.equal((await answers(v2[1])).version, 'v2');
    await p.stop('blue');
  });

  test('a missing release directory is refused before anything is spawned', async () => {
    const p = provider();
    await assert.rejects(p.start('green', { version: 'v3', path: path.join(tmp.root, 'no-such-dir') }), (err) => {
      assert.ok(isCutoverError(err, 'CUTOVER_ERR_RELEASE_PATH'));
      assert.equal(err.details?.path, path.join(tmp.root, 'no-such-dir'));
      return true;
    });
    await assert.rejects(p.start('green', { version: 'v3', path: null }), (err) => isCutoverError(err, 'CUTOVER_ERR_RELEASE_PATH'));
    assert.deepEqual(p.instances('green'), []);
    assert.equal(existsSync(path.join(p.stateDir, 'logs')), false);
    assert.deepEqual(await markedLeaders(p.stateDir), []);
  });

  test('a restarted daemon adopts running instances without spawning, and restarts one that then dies', async () => {
    const stateDir = tmp.dir('state');
    const a = provider({ stateDir });
    const started = await a.start('green', { version: 'v1', path: tmp.dir('rel') });
    await Promise.all(started.map(answers));
    await a.detach(); // the daemon goes away; its instances must not

    const b = provider({ stateDir, adoptedPollMs: 50, restartBackoff: { initialMs: 50, maxMs: 50 } });
    const adopted = await b.adopt('green', started);
    assert.deepEqual(adopted.map((i) => [i.id, i.pid, i.port]), started.map((i) => [i.id, i.pid, i.port]));
    assert.deepEqual((await markedLeaders(stateDir)).sort(), started.map((i) => i.pid).sort(), 'no new process');

    b.setAutoRestart('green', true);
    const exited = once(b, 'instance-exit');
    const restarted = once(b, 'instance-restart');
    process.kill(started[0].pid as number, 'SIGKILL');
    const [gone, info] = await exited;
    assert.equal(gone.id, 'green-0');
    assert.deepEqual(info, { code: null, signal: null }, 'not our child: the exit status is unknown');
    const [back] = await restarted;
    assert.notEqual(back.pid, started[0].pid);
    assert.equal((await answers(back)).pid, back.pid);
    assert.equal(b.instances('green')[1].pid, started[1].pid, 'the other instance is untouched');

    await b.stop('green');
    assert.deepEqual(await markedLeaders(stateDir), []);
  });

  test('instances outlive a daemon killed with SIGKILL, keep logging, and are adopted by the next one', async () => {
    const stateDir = tmp.dir('state');
    const daemon = spawn(process.execPath, [FIXTURE_DAEMON, stateDir, tmp.dir('rel'), FIXTURE_COMMAND], { stdio: ['ignore', 'pipe', 'inherit'] });
    foreign.push(daemon.pid as number);
    let out = '';
    daemon.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const recorded = await waitFor('the daemon to report its instances', () => (out.includes('\n') ? (JSON.parse(out) as Instance[]) : null), 10_000);
    await Promise.all(recorded.map(answers));
    daemon.kill('SIGKILL');
    await once(daemon, 'exit');

    for (const inst of recorded) assert.equal((await answers(inst)).pid, inst.pid, `${inst.id} still serves`);
    const next = provider({ stateDir });
    const adopted = await next.adopt('blue', recorded);
    assert.deepEqual(adopted.map((i) => i.pid), recorded.map((i) => i.pid));
    await next.stop('blue');
    assert.match(readFileSync(next.logPath('blue-1'), 'utf8'), /got SIGTERM/, 'the log file outlived the daemon');
    assert.deepEqual(await markedLeaders(stateDir), []);
  });

  test('adoption drops dead and foreign pids without signalling them, and stops our instances no record claims', async () => {
    const stateDir = tmp.dir('state');
    const a = provider({ stateDir });
    const started = await a.start('blue', { version: 'v1', path: tmp.dir('rel') });
    await Promise.all(started.map(answers));
    await a.detach();

    const dead = spawn('true');
    await once(dead, 'exit');
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    foreign.push(sleeper.pid as number);
    const rec = (i: number, pid: number | undefined): Instance => ({ ...started[i], pid: pid ?? null });

    const b = provider({ stateDir });
    // blue-0's record now points at a reused pid (a `sleep`), blue-1's at a dead one:
    // both dropped, and the real blue-0/blue-1 processes, claimed by no record, are stopped.
    const adopted = await b.adopt('blue', [rec(0, sleeper.pid), rec(1, dead.pid)]);
    assert.deepEqual(adopted, []);
    assert.equal(isPidAlive(sleeper.pid as number), true, 'an unrelated process is never killed');
    assert.deepEqual(await markedLeaders(stateDir), [], 'no orphans');

    // A partial record: the recorded instance is kept, the unrecorded one is stopped.
    const c = provider({ stateDir });
    const again = await c.start('blue', { version: 'v2', path: tmp.dir('rel') });
    await c.detach();
    const d = provider({ stateDir });
    const kept = await d.adopt('blue', [again[0]]);
    assert.deepEqual(kept.map((i) => i.pid), [again[0].pid]);
    assert.deepEqual(await markedLeaders(stateDir), [again[0].pid]);
    await d.stop('blue');
  });
});

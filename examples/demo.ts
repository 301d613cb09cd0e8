/**
 * The Cutover demo: start the daemon on the embedded defaults, deploy the sample shop v1, then
 * release v2 under load and report what happened. Everything runs on loopback in a temp dir.
 *
 *   npm run demo            (about 15 seconds)
 *   npm run demo -- --connections 100 --keep    (leaves the daemon running to try the CLI on it)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { INIT_TEMPLATE } from '../src/config/init-template.ts';
import { pickFreePort, probePort } from '../src/environments/ports.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'cutover.js');

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '50' },
    keep: { type: 'boolean', default: false },
  },
});

/** The usual port when it is free, else any free one. */
async function freePort(preferred: number): Promise<number> {
  return (await probePort('127.0.0.1', preferred)) ?? pickFreePort('127.0.0.1', new Set());
}

function run(cmd: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...cmd], { cwd, env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/**
 * `cutover up` writing to <dir>/daemon.log, not to pipes of ours: with --keep it outlives this
 * script (own session, so a ^C here does not reach it) and the script returns to the prompt.
 */
function startDaemon(cwd: string, env: NodeJS.ProcessEnv, keep: boolean): Promise<ChildProcess> {
  const logFile = path.join(cwd, 'daemon.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [BIN, 'up'], { cwd, env: { ...env, CUTOVER_LOG_LEVEL: 'warn' }, stdio: ['ignore', fd, fd], detached: keep });
  closeSync(fd);
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => { clearInterval(poll); reject(new Error(`cutover up exited with ${code}\n${readFileSync(logFile, 'utf8')}`)); };
    child.once('exit', onExit);
    const poll = setInterval(() => {
      const out = readFileSync(logFile, 'utf8');
      if (!out.includes(' is up')) return;
      clearInterval(poll);
      child.off('exit', onExit);
      process.stdout.write(out.replace(/^/gm, '  '));
      resolve(child);
    }, 50);
  });
}

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-demo-'));
  const ports = { live: await freePort(8080), preview: await freePort(8081), admin: await freePort(8900) };
  // The embedded defaults (the `cutover init` starter) with free ports and quick health checks.
  const config = INIT_TEMPLATE
    .replace('listen: 127.0.0.1:8080', `listen: 127.0.0.1:${ports.live}`)
    .replace('preview: 127.0.0.1:8081', `preview: 127.0.0.1:${ports.preview}`)
    .replace('listen: 127.0.0.1:8900', `listen: 127.0.0.1:${ports.admin}`)
    .replace('interval: 1s', 'interval: 250ms')
    .replace('drainTimeout: 30s', 'drainTimeout: 10s')
    // Prove v2 before the switch and judge it for a few seconds after (short, for a demo).
    .replace('gates: []\n', [
      'gates:',
      '  - name: version',
      '    http: { path: /version, expect: { status: 200, json: { version: "{version}" } } }',
      '  - name: compare',
      '    compare: { paths: [/], requests: 100, maxErrorRateRatio: 2, maxP95Ratio: 3 }',
      'analysis:',
      '  window: 4s',
      '  interval: 2s',
      '  minRequests: 50',
      '  maxLatency: { p95: { relative: 2, slack: 50ms }, p99: false }',
      '',
    ].join('\n'));
  writeFileSync(path.join(dir, 'cutover.yaml'), config);
  const env = { ...process.env };
  delete env.CUTOVER_TOKEN;
  delete env.CUTOVER_ADMIN_URL;

  console.log(`\n== Cutover demo (state and config in ${dir})\n`);
  const daemon = await startDaemon(dir, env, args.keep === true);
  const live = `http://127.0.0.1:${ports.live}`;
  try {
    console.log('\n== 1. deploy v1 (first release)\n');
    if ((await run(['deploy', 'v1', '--path', path.join(ROOT, 'examples/shop/v1')], dir, env)) !== 0) return 1;

    const connections = Number(args.connections);
    console.log(`\n== 2. release v2 under load: ${connections} keep-alive connections on ${live}, including 2 s requests in flight\n`);
    const load = autocannon({ url: live, connections, duration: 600, requests: [{ method: 'GET', path: '/' }] }, () => undefined);
    const slow = autocannon({ url: `${live}/slow?ms=2000`, connections: 5, duration: 600 }, () => undefined);
    const versions = new Map<string, number>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          const r = await fetch(`${live}/version`);
          const v = ((await r.json()) as { version: string }).version;
          versions.set(v, (versions.get(v) ?? 0) + 1);
        } catch { versions.set('error', (versions.get('error') ?? 0) + 1); }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await new Promise((r) => setTimeout(r, 2_000));
    const t0 = Date.now();
    const code = await run(['deploy', 'v2', '--path', path.join(ROOT, 'examples/shop/v2')], dir, env);
    const deployMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 2_500)); // let the 2 s requests started on blue finish
    sampling = false;
    await sampler;
    const [a, b] = await Promise.all([stop(load), stop(slow)]);

    const status = await statusJson(dir, env);
    const history = await historyJson(dir, env);
    const switchMs = history.deployments.find((d) => d.version === 'v2')?.switchMs ?? null;
    const served = a.requests.total + b.requests.total;
    const failed = a.errors + a.timeouts + a.non2xx + b.errors + b.timeouts + b.non2xx;
    console.log('\n== Result\n');
    console.log(`  requests served   ${served} (${Math.round(a.requests.average)} req/s, p99 ${a.latency.p99} ms)`);
    console.log(`  requests failed   ${failed}`);
    console.log(`  2 s requests      ${b.requests.total} completed across the switch`);
    console.log(`  time to switch    ${switchMs === null ? '?' : `${switchMs.toFixed(2)} ms`} (whole deploy ${(deployMs / 1000).toFixed(1)} s)`);
    console.log(`  answers by version ${[...versions].map(([v, n]) => `${v}: ${n}`).join(', ')}  (from a sampler: GET /version every 20 ms beside the load, not counted above)`);
    console.log(`  live version      ${status.live?.version} on ${status.live?.color} (standby ${status.standby?.version} on ${status.standby?.color}, warm for instant rollback)`);
    return code === 0 && failed === 0 && status.live?.version === 'v2' ? 0 : 1;
  } finally {
    if (args.keep) {
      // `npx cutover` only works inside the checkout, and the Node.js on PATH may be too old:
      // name the command by this very Node.js and the checkout's bin.
      console.log(`\n  --keep: the daemon keeps running (pid ${daemon.pid}, log ${path.join(dir, 'daemon.log')}). Try it:`);
      console.log(`    cd ${dir}`);
      console.log(`    alias cutover='${process.execPath} ${BIN}'`);
      console.log('    cutover status; cutover rollback; cutover history');
      console.log(`  stop it with: kill ${daemon.pid}   (it stops its instances; then rm -r ${dir})\n`);
      daemon.unref();
    } else {
      await new Promise<void>((resolve) => {
        if (daemon.exitCode !== null || daemon.signalCode !== null) { resolve(); return; }
        daemon.once('exit', () => resolve());
        daemon.kill('SIGTERM');
      });
      rmSync(dir, { recursive: true, force: true });
      console.log('\n  (the demo\'s daemon and temp dir are gone; `npm run demo -- --keep` leaves them running to try the CLI)\n');
    }
  }
}

function stop(instance: autocannon.Instance): Promise<autocannon.Result> {
  return new Promise((resolve) => {
    instance.once('done', resolve);
    instance.stop();
  });
}

async function cliJson<T>(cmd: string[], dir: string, env: NodeJS.ProcessEnv): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...cmd, '--json'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('close', () => { try { resolve(JSON.parse(out) as T); } catch (e) { reject(e); } });
  });
}
const statusJson = (dir: string, env: NodeJS.ProcessEnv) => cliJson<{ live: { color: string; version: string } | null; standby: { color: string; version: string } | null }>(['status'], dir, env);
const historyJson = (dir: string, env: NodeJS.ProcessEnv) => cliJson<{ deployments: { version: string; switchMs: number | null }[] }>(['history'], dir, env);

main().then((code) => { process.exitCode = code; }, (err: unknown) => { console.error(err); process.exitCode = 1; });

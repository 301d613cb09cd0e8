/**
 * `npm run bench:mirror` (or `node bench/mirror.ts [--quick] [--out FILE]`): live throughput of
 * the router with mirroring off, at 10 % and at 100 % sampling, in one run, as ratios to "off".
 * Runs alone (it is not part of `npm run bench`), and rewrites the "Mirroring" section of
 * docs/benchmarks.md unless --quick (then stdout only, or --out FILE).
 *
 * Set-up: the nginx origin (blue and green server blocks), the router in its own process (as
 * `cutover` runs it) with blue live and green as the candidate copies go to; wrk with 2 threads
 * and 50 keep-alive connections on GET /. Modes are measured in rounds, the order reversed every
 * other round, so drift on the machine hits all alike; the median round is reported.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RouterProcess } from './cutover.ts';
import { Nginx, originConfig, startSlowBackend, type OriginPorts } from './peers.ts';
import { freePort, killAllSync, sleep, stopAll } from './procs.ts';
import { median } from './report.ts';
import { runWrk, wrkFailures, type WrkResult } from './wrk.ts';
import type { MirrorSpec } from '../src/router/route-table.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DOC = path.join(HERE, '..', 'docs', 'benchmarks.md');
const BEGIN = '<!-- mirror-bench:begin -->';
const END = '<!-- mirror-bench:end -->';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean' }, out: { type: 'string' } } });
const plan = args.quick ? { rounds: 2, durationS: 3, warmupS: 1 } : { rounds: 5, durationS: 6, warmupS: 2 };
const MODES: { key: string; label: string; sample: number | null }[] = [
  { key: 'off', label: 'mirroring off', sample: null },
  { key: '10', label: 'mirroring 10 %', sample: 0.1 },
  { key: '100', label: 'mirroring 100 %', sample: 1 },
];

function spec(sample: number, n: number): MirrorSpec {
  // The gate's defaults (gates/schema.ts).
  return { id: `bench-${n}`, sample, methods: ['GET', 'HEAD'], maxBodyBytes: 256 * 1024, headers: ['content-type'], ignore: [], queue: 1_000, concurrency: 8, timeoutMs: 10_000 };
}

process.on('exit', killAllSync);
const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-bench-mirror-'));
try {
  const origin: OriginPorts = { blue: await freePort(), green: await freePort(), slow: await freePort() };
  await startSlowBackend(origin.slow);
  await Nginx.start(dir, 'origin', originConfig(dir, origin), origin.green);
  const router = await RouterProcess.start();
  const url = `http://127.0.0.1:${router.port}/`;
  const results = new Map<string, WrkResult[]>(MODES.map((m) => [m.key, []]));
  let n = 0;
  for (let round = 0; round < plan.rounds; round++) {
    const order = round % 2 === 0 ? MODES : [...MODES].reverse();
    for (const m of order) {
      await router.swap('blue', origin, m.sample === null ? null : spec(m.sample, ++n));
      await runWrk(url, { threads: 2, connections: 50, durationS: plan.warmupS });
      await sleep(300);
      const r = await runWrk(url, { threads: 2, connections: 50, durationS: plan.durationS });
      results.get(m.key)!.push(r);
      process.stderr.write(`round ${round + 1} ${m.label}: ${Math.round(r.rps)} req/s, p99 ${r.p99Ms.toFixed(2)} ms, ${wrkFailures(r)} failed\n`);
    }
  }
  await router.stop();
  // Ratios within each round (the machine's load changes between rounds more than between modes).
  const offs = results.get('off')!;
  const rows = MODES.map((m) => {
    const rs = results.get(m.key)!;
    const rps = median(rs.map((r) => r.rps));
    const ratios = rs.map((r, i) => r.rps / offs[i].rps);
    const p50 = median(rs.map((r) => r.p50Ms));
    const p99 = median(rs.map((r) => r.p99Ms));
    const failed = rs.reduce((a, r) => a + wrkFailures(r), 0);
    return `| ${m.label} | ${Math.round(rps).toLocaleString('en-US')} | ${median(ratios).toFixed(2)}x (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) | ${p50.toFixed(2)} ms | ${p99.toFixed(2)} ms | ${failed} |`;
  });
  const load = os.loadavg()[0].toFixed(1);
  const section = [
    BEGIN,
    '## Mirroring (shadow traffic)',
    '',
    `Live throughput of the router while a \`mirror\` gate copies live requests to the candidate and to the live colour a`,
    `second time (\`node bench/mirror.ts\`, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} cores shared by wrk, the router and the nginx origin;`,
    `wrk 2 threads × 50 keep-alive connections, ${plan.rounds} round(s) of ${plan.durationS} s per mode; req/s, p50, p99: median of the rounds; "vs off":`,
    `median (min–max) of each round's ratio to "off" in the same round; load average at the end ${load}). Every sampled request costs`,
    'two more upstream requests and a comparison on the router\'s CPU; the bounded queue (1000) drops copies rather than slow live answers.',
    '',
    '| live listener | req/s | vs off (same round) | p50 | p99 | failed |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    'On a machine shared with other work the rounds vary a lot (the ranges); quote a ratio only from a quiet run.',
    END,
  ].join('\n');
  process.stdout.write(`${section}\n`);
  const out = args.out ?? (args.quick ? null : DOC);
  if (out !== null) {
    const doc = out === DOC ? readFileSync(DOC, 'utf8') : '';
    const at = doc.indexOf(BEGIN);
    const next = at === -1 ? `${doc.trimEnd()}\n\n${section}\n` : `${doc.slice(0, at)}${section}${doc.slice(doc.indexOf(END) + END.length)}`;
    writeFileSync(out, out === DOC ? next : `${section}\n`);
  }
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

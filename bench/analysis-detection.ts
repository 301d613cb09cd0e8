/**
 * Benchmark: how long post-switch analysis takes from the switch of a bad release to the
 * rollback being in force. The claim: at most one interval plus 100 ms (failureLimit 1, errors
 * from the first request). Real daemon, real instance processes (test/fixtures/judged), live
 * load through the router; the bad release answers 20 % errors.
 *
 *   node bench/analysis-detection.ts [--runs 5] [--intervals 1s,2s]
 *
 * Prints one line per interval length and a JSON summary on the last line.
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseDuration } from '../src/lib/duration.ts';
import { startHarness } from '../test/fixtures/judged/harness.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, intervals: { type: 'string', default: '1s,2s' } } });
const runs = Number(values.runs);
const intervals = values.intervals.split(',').map((s) => ({ text: s.trim(), ms: parseDuration(s.trim())! }));

interface Sample { switchToRollbackMs: number; intervalEndToRollbackMs: number }

const results: { interval: string; bound: number; runs: Sample[]; max: number; median: number; withinBound: boolean }[] = [];
for (const iv of intervals) {
  const h = await startHarness(`analysis:\n  window: ${iv.ms * 10}ms\n  interval: ${iv.text}\n  minRequests: 20\n  failureLimit: 1\n  baseline: 5s\n`);
  const samples: Sample[] = [];
  try {
    if ((await h.deploy('v1')).status !== 'succeeded') throw new Error('v1 did not go live');
    h.liveLoad({ rate: 200, connections: 8 });
    await sleep(2_000);
    for (let i = 0; i < runs; i++) {
      const d = await h.deploy(`v${i + 2}-err20`);
      if (d.status !== 'rolled-back') throw new Error(`run ${i}: ${d.version} ended ${d.status}`);
      const ev = h.events(d.id);
      const sw = ev.find((e) => e.type === 'switch')!;
      const rb = ev.find((e) => e.type === 'rollback')!;
      const failed = ev.find((e) => e.type === 'analysis' && e.data?.outcome === 'failed')!;
      // Event time is when the event was committed: the rollback's is just after its swap took effect.
      samples.push({ switchToRollbackMs: rb.time - sw.time, intervalEndToRollbackMs: rb.time - (failed.data!.to as number) });
      await sleep(500);
    }
  } finally {
    await h.close();
  }
  const sorted = samples.map((s) => s.switchToRollbackMs).sort((a, b) => a - b);
  const bound = iv.ms + 100;
  const r = { interval: iv.text, bound, runs: samples, max: sorted.at(-1)!, median: sorted[Math.floor(sorted.length / 2)], withinBound: sorted.at(-1)! <= bound };
  results.push(r);
  const tail = samples.map((s) => s.intervalEndToRollbackMs).sort((a, b) => a - b);
  console.log(`interval ${iv.text}: switch → rollback in force: median ${r.median} ms, max ${r.max} ms over ${runs} runs (bound: interval + 100 ms = ${bound} ms: ${r.withinBound ? 'met' : 'MISSED'}); end of the failing interval → rollback: median ${tail[Math.floor(tail.length / 2)]} ms, max ${tail.at(-1)} ms`);
}
console.log(JSON.stringify({ benchmark: 'analysis-detection', results }));

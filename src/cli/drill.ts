/** `cutover drill`: flip live to the warm standby and back under probe load; report flip times and failed probes. */
import { Option, type Command } from 'commander';
import { CutoverError, EXIT } from '../lib/errors.ts';
import { parseDuration } from '../lib/duration.ts';
import type { DrillReport } from '../analysis/drill.ts';
import type { CommandKit } from './context.ts';

export function registerDrill(program: Command, kit: CommandKit): void {
  program.command('drill')
    .description('rollback drill: flip to the standby and back under probe load, report the time to switch and failed requests')
    .option('--json', 'print the report as JSON')
    .option('--path <path>', 'probe path on the live listener', '/')
    .addOption(new Option('--rate <n>', 'probe requests per second').default('50').argParser(positive('--rate')))
    .option('--hold <duration>', 'time on the standby before flipping back', '500ms')
    .action(async (opts: { json?: boolean; path: string; rate: string; hold: string }, cmd: Command) => {
      if (!opts.path.startsWith('/')) throw new CutoverError('CUTOVER_ERR_USAGE', `--path: expected a path starting with "/", got ${opts.path}`);
      const holdMs = parseDuration(opts.hold);
      if (holdMs === null || holdMs > 60_000) throw new CutoverError('CUTOVER_ERR_USAGE', `--hold: expected a duration up to 60s like "500ms", got ${opts.hold}`);
      await kit.withClient(cmd, async (c) => {
        const r = await c.call<DrillReport>('POST', '/drill', { path: opts.path, rate: Number(opts.rate), holdMs });
        if (opts.json) kit.json(r);
        else printDrill(kit, r);
        kit.setExit(r.outcome === 'passed' ? EXIT.OK : EXIT.FAILED);
      });
    });
}

function printDrill(kit: CommandKit, r: DrillReport): void {
  const out = kit.io.stdout;
  for (const f of r.flips) {
    out.write(`  ✓ ${f.from.color} (${f.from.version}) → ${f.to.color} (${f.to.version})  ${f.ms.toFixed(1)}ms\n`);
  }
  if (r.error) out.write(`  ✗ ${r.error}\n`);
  const p = r.probes;
  out.write(`  probes: ${p.sent} sent to ${p.path} at ${p.rate} req/s, ${p.failed} failed (${p.byClass['5xx']} 5xx, ${p.byClass.failed} connection errors)\n`);
  const rec = Number.isFinite(r.recoveryMs) ? `${r.recoveryMs.toFixed(1)}ms` : 'n/a';
  const within = Number.isFinite(r.recoveryMs) && r.recoveryMs < r.targetMs;
  if (r.outcome === 'passed') out.write(`✓ drill passed: time to switch ${rec} (target < ${r.targetMs}ms${within ? '' : ', MISSED'}), 0 failed probes\n`);
  else out.write(`✗ drill failed: time to switch ${rec}, ${p.failed} failed probe(s)${r.error ? `; ${r.error}` : ''}\n`);
}

function positive(flag: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || n > 10_000) throw new CutoverError('CUTOVER_ERR_USAGE', `${flag}: expected a number from 1 to 10000, got ${v}`);
    return String(n);
  };
}

/** `cutover report [--since 30d] [--json]`: release figures from the daemon's history (GET /report). */
import { Option, type Command } from 'commander';
import { CutoverError } from '../lib/errors.ts';
import { formatDuration, parseDuration } from '../lib/duration.ts';
import type { ReleaseReport } from '../telemetry/report.ts';
import type { Io, CommandKit } from './context.ts';
import { table } from './format.ts';

export function registerReport(program: Command, kit: CommandKit): void {
  program.command('report')
    .description('release figures: success rates, time to switch, time to rollback, errors after the switch against baseline')
    .addOption(new Option('--since <duration>', 'how far back, e.g. 7d, 12h').default('30d').argParser((v) => {
      const ms = parseDuration(v);
      if (ms === null || ms <= 0) throw new CutoverError('CUTOVER_ERR_USAGE', `--since: expected a duration like 30d, 12h or 90m, got ${v}`);
      return v;
    }))
    .option('--json', 'print as JSON')
    .action(async (opts: { since: string; json?: boolean }, cmd: Command) => {
      await kit.withClient(cmd, async (c) => {
        const r = await c.call<ReleaseReport>('GET', `/report?since=${encodeURIComponent(opts.since)}`);
        if (opts.json) kit.json(r); else printReport(kit.io, r, opts.since);
      });
    });
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(1)}%`);
const ms = (x: number | null | undefined) => (x === null || x === undefined ? '-' : formatDuration(x));

/** `green 3 / 2.1% · blue 0 / 0%`: the release's colour first. */
function authCell(x: ReleaseReport['releases'][number]): string {
  if (x.auth === null) return '-';
  const colours = Object.keys(x.auth).sort((a, b) => (a === x.color ? -1 : b === x.color ? 1 : 0));
  return colours.map((c) => {
    const f = x.auth![c];
    return `${c} ${f.authFailures[401] + f.authFailures[403] + f.authFailures[419]} / ${pct(f.sessionLossRate)}`;
  }).join(' · ');
}

export function printReport(io: Io, r: ReleaseReport, since: string): void {
  const d = r.deployments;
  const out: string[] = [];
  out.push(`releases in the last ${since}: ${d.total} deployment(s)${d.inProgress ? ` (${d.inProgress} in progress)` : ''}`);
  if (d.total === 0) {
    io.stdout.write(`${out[0]}\n`);
    return;
  }
  const finished = d.total - d.inProgress;
  const rows = [
    ['deployment success rate', `${pct(r.deploymentSuccessRate)}  (${d.succeeded} of ${finished} finished; ${d.failed} failed, ${d.rolledBack} rolled back, ${d.aborted} aborted${d.interrupted ? `, ${d.interrupted} interrupted` : ''})`],
    ['cutover success rate', `${pct(r.cutoverSuccessRate)}  (${r.cutovers.kept} of ${r.cutovers.switched} switches kept)`],
    ['time to switch', r.timeToSwitchMs ? `p50 ${ms(r.timeToSwitchMs.p50)}, p95 ${ms(r.timeToSwitchMs.p95)}, max ${ms(r.timeToSwitchMs.max)}` : '-'],
    // Two figures users mix up (issue 16): how long the rollback took, and how long the bad release was live.
    ['rollbacks', `${r.rollbacks.count}  (${r.rollbacks.automatic} automatic, ${r.rollbacks.manual} manual)${r.rollbackMs ? `; each took p50 ${ms(r.rollbackMs.p50)}, max ${ms(r.rollbackMs.max)}` : ''}`],
    ['live before rollback', r.meanTimeToRollbackMs === null ? '-' : `${ms(r.meanTimeToRollbackMs)} mean  (switch → rollback: how long users had a release that was rolled back)`],
    ['session loss', r.sessions ? `${pct(r.sessions.sessionLossRate)}  (${r.sessions.authFailures} auth failure(s) 401/403/419 on the new colours, ${r.sessions.withCredentials} request(s) with credentials, ${r.sessions.releases} release(s))` : '-'],
    ['errors after switch', r.postSwitch ? `${pct(r.postSwitch.errorRate)} against ${pct(r.postSwitch.baselineErrorRate)} before  (${r.postSwitch.worseThanBaseline} of ${r.postSwitch.releases} release(s) worse than baseline)` : '-'],
  ];
  out.push(table(rows).trimEnd());
  io.stdout.write(`${out.join('\n')}\n\n`);
  const rel = [['VERSION', 'COLOR', 'OUTCOME', 'SWITCH', 'ROLLED BACK AFTER', 'ERRORS AFTER', 'BASELINE', 'AUTH FAIL / SESSION LOSS', 'ID']];
  for (const x of r.releases) {
    rel.push([
      x.version, x.color, x.rolledBack && x.status === 'succeeded' ? 'rolled back later' : x.status, ms(x.switchMs), ms(x.timeToRollbackMs),
      x.postSwitch ? pct(x.postSwitch.errorRate) : '-', x.postSwitch?.baseline ? pct(x.postSwitch.baseline.errorRate) : '-', authCell(x), x.id,
    ]);
  }
  io.stdout.write(table(rel));
}

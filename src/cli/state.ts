/**
 * `cutover state check | restore`: inspect and repair the state directory the daemon refused
 * (src/daemon/state-check.ts, loaded only when one of them runs). These read the files named by
 * the config's `stateDir`, not the admin API: they are for when no daemon can run on that state.
 * `restore` refuses while a daemon holds the directory.
 */
import type { Command } from 'commander';
import type { StateReport } from '../daemon/state-check.ts';
import { loadConfig, type CommandKit } from './context.ts';
import { CutoverError, EXIT } from '../lib/errors.ts';
import type { LoadedConfig } from '../config/schema.ts';

function when(ms: number): string {
  return new Date(ms).toISOString();
}

function printReport(out: NodeJS.WritableStream, r: StateReport): void {
  const lines: string[] = [];
  lines.push(`state directory ${r.stateDir}`);
  lines.push(`  daemon      ${r.daemon.running ? `running (pid ${r.daemon.pid ?? 'unknown'})` : 'not running'}`);
  const db = r.database;
  if (!db.exists) lines.push('  state.db    missing (a start creates an empty one)');
  else if (db.problems.length > 0) lines.push(`  state.db    DAMAGED (${db.bytes} bytes, WAL ${db.walBytes} bytes): ${db.problems.slice(0, 3).join('; ')}`);
  else {
    lines.push(`  state.db    ${db.bytes} bytes, WAL ${db.walBytes} bytes, integrity ok, id ${db.dbId ?? '?'}, generation ${db.generation ?? '?'}${db.empty ? ', holds no state' : ''}`);
    for (const e of db.environments) lines.push(`    ${e.color.padEnd(6)} ${e.role.padEnd(9)} ${e.version ?? '-'}`);
    if (db.interrupted) lines.push(`    interrupted deployment ${db.interrupted.id}: ${db.interrupted.version} on ${db.interrupted.color} (${db.interrupted.phase})`);
  }
  const m = r.marker;
  lines.push(`  marker      ${m === null ? 'none' : m === 'unreadable' ? 'UNREADABLE' : `database ${m.dbId}, generation ${m.generation}, written ${when(m.updatedAt)}${m.live ? `, live ${m.live.version} on ${m.live.color}` : ''}`}`);
  lines.push(`  instances   ${r.instances.running.length} running${r.instances.unaccounted.length > 0 ? `, ${r.instances.unaccounted.length} NOT accounted for: ${r.instances.unaccounted.map((p) => `${p.color}-${p.instance} ${p.version} (pid ${p.pid})`).join(', ')}` : ''}`);
  lines.push(`  snapshots   ${r.snapshots.length === 0 ? 'none' : ''}`);
  for (const s of r.snapshots) {
    const verdict = s.problems.length > 0 ? `DAMAGED: ${s.problems[0]}` : `ok${s.sameDatabase === false ? ', another database' : ''}${s.live ? `, live ${s.live.version} on ${s.live.color}` : ', nothing live'}`;
    lines.push(`    ${s.name}  generation ${s.generation}, ${when(s.takenAt)}, ${s.bytes} bytes, ${verdict}`);
  }
  if (r.ok) lines.push('✓ a start would accept this state');
  else {
    lines.push('✗ a start would refuse this state:');
    for (const f of r.findings) lines.push(`  - ${f}`);
    lines.push('To recover:', ...r.advice);
  }
  out.write(`${lines.join('\n')}\n`);
}

/** The state directory a command works on: with `services:`, the named service's (`-s`), which is required. */
function stateDirOf(config: LoadedConfig, cmd: Command, env: NodeJS.ProcessEnv): string {
  const services = config.services ?? null;
  if (!services || services.length === 0) return config.stateDir;
  const name = cmd.optsWithGlobals<{ service?: string }>().service ?? env.CUTOVER_SERVICE;
  const svc = services.find((s) => s.name === name);
  if (!svc) {
    throw new CutoverError('CUTOVER_ERR_USAGE', `${name ? `--service ${name}: no such service` : 'each service has its own state directory: name one with --service NAME'} (services: ${services.map((s) => s.name).join(', ')})`);
  }
  return svc.config.stateDir;
}

export function registerState(program: Command, kit: CommandKit): void {
  const { io } = kit;
  const state = program.command('state').description('inspect or repair the state directory (state.db, its marker and snapshots)');
  state.command('check')
    .description('what a start would find: the database and its integrity, the marker, running instances, snapshots (read-only)')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(io, kit.configOf(cmd));
      // Loaded here, when the command runs: the CLI's start-up loads no daemon code.
      const { checkStateDir } = await import('../daemon/state-check.ts');
      const r = await checkStateDir(stateDirOf(config, cmd, io.env));
      if (opts.json) kit.json(r); else printReport(io.stdout, r);
      kit.setExit(r.ok ? EXIT.OK : EXIT.FAILED);
    });
  state.command('restore')
    .description('put back a snapshot as state.db (default: the newest good one); the replaced files are kept aside; the daemon must be stopped')
    .argument('[snapshot]', 'a snapshot file name from `cutover state check`')
    .option('--json', 'print the result as JSON')
    .action(async (snapshot: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const config = loadConfig(io, kit.configOf(cmd));
      const { restoreSnapshot } = await import('../daemon/state-check.ts');
      const r = restoreSnapshot(stateDirOf(config, cmd, io.env), snapshot);
      if (opts.json) { kit.json(r); return; }
      io.stdout.write([
        `restored ${r.snapshot.name} (generation ${r.generation}, taken ${when(r.snapshot.takenAt)}): ${r.live ? `${r.live.version} live on ${r.live.color}` : 'nothing live'}`,
        `  replaced files kept in ${r.keptAside}${r.moved.length > 0 ? ` (${r.moved.join(', ')})` : ''}`,
        ...(r.olderThanReplaced ? [`  warning: the replaced state was newer (generation ${r.olderThanReplaced.generation}${r.olderThanReplaced.live ? `, ${r.olderThanReplaced.live.version} live on ${r.olderThanReplaced.live.color}` : ''}); its live instances are not taken for this snapshot's and are never stopped without --stop-unknown-instances`] : []),
        '  changes after that snapshot are not in it; `cutover up` adopts the instances it records, and refuses to stop any it does not (see `cutover state check`)',
        '',
      ].join('\n'));
    });
}

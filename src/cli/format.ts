/** Human output of the CLI: step lines, status and history tables. Plain text, no colour codes off a TTY. */
import { formatDuration } from '../lib/duration.ts';
import type { DeploymentRecord, EventRecord } from '../store/types.ts';

const MARK: Record<string, string> = { passed: '✓', failed: '✗', skipped: '–' };

/** One line per pipeline event as it happens; null for events the step list does not show. */
export function stepLine(e: EventRecord): string | null {
  const dur = e.durationMs !== null ? formatDuration(e.durationMs) : '';
  if (e.type.startsWith('migrations.')) {
    const head = `      ${migrationMark(e)} ${e.reason}`;
    if (e.type === 'migrations.lint') {
      const [extra, ...rest] = lintFindingLines(e).split('\n');
      return [`${head}${extra}${dur ? ` (${dur})` : ''}`, ...rest].join('\n');
    }
    return `${head}${dur ? ` (${dur})` : ''}`;
  }
  switch (e.type) {
    case 'deployment.started':
      return `▶ ${e.reason}`;
    case 'phase': {
      const outcome = String(e.data?.outcome ?? 'passed');
      // A failed instance: its last output lines under the step (the reason quotes the last one).
      const log = outcome === 'failed' && Array.isArray(e.data?.log) && e.data.log.length > 1
        ? `\n${(e.data.log as unknown[]).map((l) => `          │ ${String(l)}`).join('\n')}` : '';
      return `  ${MARK[outcome] ?? '•'} ${String(e.phase).padEnd(10)} ${dur.padStart(7)}  ${e.reason}${log}`;
    }
    case 'gate': {
      const outcome = String(e.data?.outcome ?? 'passed');
      const output = outcome === 'failed' && typeof e.data?.output === 'string' && e.data.output !== ''
        ? `\n${e.data.output.split('\n').slice(-10).map((l) => `          │ ${l}`).join('\n')}` : '';
      return `      ${MARK[outcome] ?? '•'} ${e.reason}${output}`;
    }
    case 'parity':
      return `      ${e.data?.outcome === 'warning' ? '!' : '✓'} ${e.reason}`;
    case 'warmup':
      return `      • ${e.reason}`;
    case 'analysis': {
      const outcome = String(e.data?.outcome ?? '');
      return `      ${MARK[outcome] ?? '?'} ${e.reason}`;
    }
    case 'analysis.started':
    case 'analysis.paused':
    case 'drill':
      return `  • ${e.reason}`;
    case 'promote.waiting':
    case 'standby.replaced':
    case 'standby.held':
    case 'standby.restored':
    case 'rollback':
    case 'rollback.restart':
    case 'failover':
    case 'abort':
      return `  • ${e.reason}`;
    case 'drain':
      return `  • ${e.reason} (${dur})`;
    case 'switch.step':
      // A gradual switch: each share of live traffic as it takes effect.
      return `  ↗ ${e.reason}`;
    case 'switch.step.verdict': {
      const outcome = String(e.data?.outcome ?? '');
      return `      ${MARK[outcome] ?? '?'} ${e.reason}`;
    }
    case 'schema.overridden':
      return `  ! ${e.reason}`;
    default:
      return null;
  }
}

interface LintFindingView { file: string; line: number; rule: string; severity: string; message: string; suppressed?: { reason: string } }

/** Under the lint step: every warning and every suppression with its reason (errors are in the phase line). */
function lintFindingLines(e: EventRecord): string {
  const findings = Array.isArray(e.data?.findings) ? (e.data.findings as LintFindingView[]) : [];
  const shown = findings.filter((f) => f.suppressed || f.severity === 'warning');
  const suppressed = findings.filter((f) => f.suppressed).length;
  const lines = [suppressed > 0 ? `, ${suppressed} suppressed` : ''];
  for (const f of shown) {
    lines.push(f.suppressed
      ? `          suppressed ${f.file}:${f.line} ${f.rule} ${f.message} (allowed: ${f.suppressed.reason})`
      : `          ! ${f.file}:${f.line}: warning ${f.rule} ${f.message}`);
  }
  return lines.join('\n');
}

/**
 * The mark of a `migrations.*` step (lint, compatibility run and its progress, applied, held):
 * its outcome where it has one, `!` where a check was overridden or found warnings, else `•`.
 */
function migrationMark(e: EventRecord): string {
  const outcome = typeof e.data?.outcome === 'string' ? e.data.outcome : null;
  if (outcome !== null) return MARK[outcome] ?? '•';
  switch (e.type) {
    case 'migrations.lint': {
      const findings = Array.isArray(e.data?.findings) ? (e.data.findings as { severity?: string; suppressed?: boolean }[]) : [];
      const open = findings.filter((f) => !f.suppressed);
      return open.some((f) => f.severity === 'error') ? '✗' : open.some((f) => f.severity === 'warning') ? '!' : '✓';
    }
    case 'migrations.lint.overridden':
    case 'migrations.contract.refused':
      return '!';
    case 'migrations.applied':
    case 'migrations.contract':
      return '✓';
    case 'migrations.contract.failed':
      return '✗';
    default:
      return '•';
  }
}

export function finalLine(d: DeploymentRecord): string {
  const total = d.finishedAt ? formatDuration(d.finishedAt - d.createdAt) : '';
  switch (d.status) {
    case 'succeeded':
      return `✓ ${d.version} is live on ${d.color}${d.switchMs !== null ? `; switch took ${formatDuration(d.switchMs)}` : ''} (total ${total})`;
    case 'rolled-back':
      return `✗ ${d.version} was rolled back: ${d.error?.message ?? ''}${d.fromVersion ? `; ${d.fromVersion} is live on ${d.fromColor}` : ''}`;
    case 'aborted':
      return `✗ ${d.version} was aborted: ${d.error?.message ?? ''}; traffic untouched`;
    case 'failed':
      return `✗ ${d.version} failed: ${d.error?.message ?? ''}; traffic untouched`;
    case 'awaiting-promotion':
      return `… ${d.version} on ${d.color} waits for \`cutover promote\``;
    default:
      return `${d.version}: ${d.status}`;
  }
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n') + '\n';
}

export function ago(ms: number): string {
  return `${formatDuration(Math.max(0, Date.now() - ms))} ago`;
}

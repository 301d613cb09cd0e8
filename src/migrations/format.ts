/**
 * Renders lint reports for people (terminal), machines (JSON, stable schema) and GitHub
 * Actions (workflow-command annotations). Pure functions of the reports: no I/O here.
 */
import { isAbsolute, relative } from 'node:path';
import type { FileReport, Finding } from './lint.ts';

export type OutputFormat = 'human' | 'json' | 'github';

export interface Summary {
  errors: number;
  warnings: number;
  suppressed: number;
}

export function summarize(reports: FileReport[]): Summary {
  const all = reports.flatMap((r) => r.findings);
  return {
    errors: all.filter((f) => f.severity === 'error' && f.suppressed === undefined).length,
    warnings: all.filter((f) => f.severity === 'warning' && f.suppressed === undefined).length,
    suppressed: all.filter((f) => f.suppressed !== undefined).length,
  };
}

/** Paths under the working directory are shown relative to it, as editors and CI expect. */
export function displayPath(file: string, cwd: string = process.cwd()): string {
  if (!isAbsolute(file)) return file;
  const rel = relative(cwd, file);
  return rel.startsWith('..') || isAbsolute(rel) ? file : rel;
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export function formatHuman(reports: FileReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    for (const f of r.findings) {
      const where = `${displayPath(f.file)}:${f.line}`;
      if (f.suppressed !== undefined) {
        lines.push(`${where}: suppressed ${f.rule} ${f.message} (allowed: ${f.suppressed.reason})`);
        continue;
      }
      lines.push(`${where}: ${f.severity} ${f.rule} ${f.message}`);
      lines.push(`    why: ${f.why}`);
      lines.push(`    → safe alternative: ${f.fix}`);
    }
  }
  const s = summarize(reports);
  const files = reports.map((r) => `${displayPath(r.file)} (${r.engine}, ${r.phase})`).join(', ');
  lines.push(`${plural(s.errors, 'error')}, ${plural(s.warnings, 'warning')}, ${s.suppressed} suppressed in ${plural(reports.length, 'file')}${files === '' ? '' : `: ${files}`}`);
  return `${lines.join('\n')}\n`;
}

/** `{ files: [{ file, phase, engine, findings }], summary: { errors, warnings, suppressed } }`. */
export function formatJson(reports: FileReport[]): string {
  const files = reports.map((r) => ({ file: r.file, phase: r.phase, engine: r.engine, findings: r.findings.map(jsonFinding) }));
  return `${JSON.stringify({ files, summary: summarize(reports) }, null, 2)}\n`;
}

function jsonFinding(f: Finding): Omit<Finding, 'file'> {
  const { file: _file, ...rest } = f;
  return rest;
}

// Workflow-command escaping, as in @actions/core: data escapes % CR LF; properties also : and ,.
const escapeData = (s: string): string => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
const escapeProperty = (s: string): string => escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');

export function formatGithub(reports: FileReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    for (const f of r.findings) {
      const level = f.suppressed !== undefined || f.severity === 'info' ? 'notice' : f.severity;
      const props = [`file=${escapeProperty(displayPath(f.file))}`, `line=${f.line}`];
      if (f.column !== undefined) props.push(`col=${f.column}`);
      props.push(`title=${escapeProperty(f.rule)}`);
      const body = f.suppressed !== undefined ? `${f.message} (suppressed: ${f.suppressed.reason})` : `${f.message}\n${f.why}\n→ safe alternative: ${f.fix}`;
      lines.push(`::${level} ${props.join(',')}::${escapeData(body)}`);
    }
  }
  const s = summarize(reports);
  lines.push(`${plural(s.errors, 'error')}, ${plural(s.warnings, 'warning')}, ${s.suppressed} suppressed in ${plural(reports.length, 'file')}`);
  return `${lines.join('\n')}\n`;
}

export function format(reports: FileReport[], as: OutputFormat): string {
  return as === 'json' ? formatJson(reports) : as === 'github' ? formatGithub(reports) : formatHuman(reports);
}

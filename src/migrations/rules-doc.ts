/** Renders the rules table as Markdown for the README; a test keeps docs/migrations.md in step with RULES. */
import { RULES, type Rule } from './rules.ts';

const cell = (s: string): string => s.replace(/\|/g, '\\|');

function severityText(r: Rule): string {
  const base = r.severity.expand === r.severity.contract ? `${r.severity.expand} (both)` : `expand: ${r.severity.expand}, contract: ${r.severity.contract}`;
  const mysql = r.byEngine?.mysql?.severity;
  if (mysql === undefined) return base;
  const m = mysql.expand === mysql.contract ? `${mysql.expand} (both)` : `expand: ${mysql.expand}, contract: ${mysql.contract}`;
  return `${base}; MySQL: ${m}`;
}

export function rulesTableMarkdown(): string {
  const rows = RULES.map((r: Rule) => `| \`${r.id}\` | ${cell(r.title)} | ${r.kind} | ${r.engines.map((e) => (e === 'postgres' ? 'PostgreSQL' : 'MySQL/MariaDB')).join(', ')} | ${severityText(r)} | ${cell(r.fix)} |`);
  return ['| rule | what | kind | engines | severity | safe alternative |', '|---|---|---|---|---|---|', ...rows].join('\n');
}

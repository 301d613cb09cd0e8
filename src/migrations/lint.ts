/**
 * The migration linter: reads migration files, asks the engine analyser what each statement
 * does, and turns rule hits into findings for the file's phase (expand or contract), with
 * inline suppressions applied and recorded. It never connects to a database.
 *
 * @example
 *   const [report] = await lintFiles(['db/007_drop_email.contract.sql']);
 *   report.findings.filter((f) => f.severity === 'error' && !f.suppressed);
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { CutoverError } from '../lib/errors.ts';
import { analyseMysql } from './mysql.ts';
import { analysePostgres } from './postgres.ts';
import { getRule, isRuleId, ruleFor, type Engine, type Phase, type RuleId, type Severity } from './rules.ts';
import { SchemaState } from './schema.ts';
import { oneLine, positionOf, SqlParseFailure, type AnalysedStatement, type Analysis, type SqlComment } from './source.ts';

export type { Engine, Phase } from './rules.ts';

export interface Finding {
  file: string;
  /** 1-based line where the statement starts (leading comments excluded). */
  line: number;
  column?: number;
  rule: string;
  severity: Severity;
  /** What this statement does that triggers the rule. */
  message: string;
  /** Why it breaks the old version or blocks traffic. */
  why: string;
  /** The safe alternative. */
  fix: string;
  statement: string;
  suppressed?: { reason: string };
}

export interface FileReport {
  file: string;
  phase: Phase;
  engine: Engine;
  findings: Finding[];
}

export const DEFAULT_ENGINE: Engine = 'postgres';
export const DEFAULT_PHASE: Phase = 'expand';

export interface LintSqlOptions {
  file: string;
  /** Engine when the file has no `-- cutover:engine` header (the header wins). */
  engine?: Engine;
  /** Overrides the phase from the file name or header. */
  phase?: Phase;
  /** Schema seen in earlier files of the same run; lintFiles threads one through. */
  schema?: SchemaState;
  /**
   * The runner sets a lock timeout on every migration session (the pipeline's `database.lockTimeout`):
   * the file starts with one set, so `missing-lock-timeout` only fires after the file clears it.
   */
  lockTimeoutSet?: boolean;
}

/** Lints one file's SQL. Throws CutoverError CUTOVER_ERR_MIGRATION (details: file, line, column) when it does not parse. */
export async function lintSql(sql: string, opts: LintSqlOptions): Promise<FileReport> {
  const { file } = opts;
  const engine = headerValue(sql, 'engine', ENGINES, file) ?? opts.engine ?? DEFAULT_ENGINE;
  const phase = opts.phase ?? phaseOf(file, sql);
  const transactionWrapped = headerValue(sql, 'transaction', ['wrapped', 'none'] as const, file) === 'wrapped';
  const schema = opts.schema ?? new SchemaState();

  let analysis: Analysis;
  try {
    analysis = engine === 'postgres' ? await analysePostgres(sql, { schema, transactionWrapped }) : analyseMysql(sql, { schema });
  } catch (err) {
    if (!(err instanceof SqlParseFailure)) throw err;
    const { line, column } = positionOf(sql, err.offset);
    throw new CutoverError('CUTOVER_ERR_MIGRATION', `${file}:${line}:${column}: ${engine} parse error: ${err.message}`, {
      cause: err,
      details: { file, line, column, engine, parserMessage: err.message },
    });
  }

  addLockTimeoutHit(analysis.statements, opts.lockTimeoutSet === true);
  const findings = buildFindings(sql, file, engine, phase, analysis);
  return { file, phase, engine, findings };
}

/** Lints files in order (earlier files' CREATE TABLEs inform later type-change checks). Throws on the first unreadable or unparsable file. */
export async function lintFiles(files: string[], opts: { engine?: Engine } = {}): Promise<FileReport[]> {
  const outcome = await lintFilesCollecting(files, opts);
  if (outcome.failures.length > 0) throw outcome.failures[0].error;
  return outcome.reports;
}

export interface LintFailure {
  file: string;
  error: CutoverError;
}

/** Like lintFiles, but lints every file it can and returns the failures beside the reports. */
export async function lintFilesCollecting(files: string[], opts: { engine?: Engine } = {}): Promise<{ reports: FileReport[]; failures: LintFailure[] }> {
  const schemas: Record<Engine, SchemaState> = { postgres: new SchemaState(), mysql: new SchemaState() };
  const reports: FileReport[] = [];
  const failures: LintFailure[] = [];
  for (const file of files) {
    try {
      let sql: string;
      try {
        sql = await readFile(file, 'utf8');
      } catch (err) {
        throw new CutoverError('CUTOVER_ERR_USAGE', `${file}: cannot read migration file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err, details: { file } });
      }
      const engine = headerValue(sql, 'engine', ENGINES, file) ?? opts.engine ?? DEFAULT_ENGINE;
      reports.push(await lintSql(sql, { file, engine, schema: schemas[engine] }));
    } catch (err) {
      if (!(err instanceof CutoverError)) throw err;
      failures.push({ file, error: err });
    }
  }
  return { reports, failures };
}

const ENGINES = ['postgres', 'mysql'] as const;
const PHASES = ['expand', 'contract'] as const;

/**
 * The file's phase: from its name (`*.expand.sql`, `*.contract.sql`) or a header comment
 * (`-- cutover:phase contract`); expand when neither says. A name and header that disagree
 * are a usage error, not a guess.
 */
export function phaseOf(file: string, sql: string): Phase {
  const m = /\.(expand|contract)\.sql$/i.exec(basename(file));
  const fromName = m === null ? undefined : (m[1].toLowerCase() as Phase);
  const fromHeader = headerValue(sql, 'phase', PHASES, file);
  if (fromName !== undefined && fromHeader !== undefined && fromName !== fromHeader) {
    throw new CutoverError('CUTOVER_ERR_USAGE', `${file}: the file name says ${fromName} but its header says cutover:phase ${fromHeader}`, { details: { file } });
  }
  return fromHeader ?? fromName ?? DEFAULT_PHASE;
}

/** Reads a `-- cutover:NAME value` (or `# cutover:…`) line; an unknown value is a usage error. */
function headerValue<T extends string>(sql: string, name: string, allowed: readonly T[], file: string): T | undefined {
  const re = new RegExp(`^[ \\t]*(?:--|#)[ \\t]*cutover:${name}\\b[ \\t]*(\\S*)`, 'im');
  const m = re.exec(sql);
  if (m === null) return undefined;
  const value = m[1].toLowerCase();
  if (!(allowed as readonly string[]).includes(value)) {
    const { line } = positionOf(sql, m.index);
    throw new CutoverError('CUTOVER_ERR_USAGE', `${file}:${line}: cutover:${name} must be one of ${allowed.join(', ')}, got "${m[1]}"`, { details: { file, line } });
  }
  return value as T;
}

/** Warns on the first locking statement that runs before any lock timeout is set. */
function addLockTimeoutHit(statements: AnalysedStatement[], setByRunner: boolean): void {
  let timeoutSet = setByRunner;
  for (const s of statements) {
    if (s.lockTimeout !== undefined) timeoutSet = s.lockTimeout === 'set';
    if (s.locking && !timeoutSet) {
      s.hits.push({ rule: 'missing-lock-timeout', message: setByRunner ? 'takes a lock on a live table after this file cleared the lock timeout' : 'takes a lock on a live table before any lock timeout is set in this file' });
      return;
    }
  }
}

interface Directive {
  comment: SqlComment;
  name: string;
  args: string;
}

interface Allow {
  directive: Directive;
  rules: string[];
  reason: string;
  statement: AnalysedStatement | undefined;
  used: boolean;
}

const DIRECTIVE_RE = /cutover:([a-z-]*)[ \t]*([^\r\n]*)/i;
const KNOWN_DIRECTIVES = new Set(['phase', 'engine', 'transaction', 'allow']);

function directivesIn(comments: SqlComment[]): Directive[] {
  const out: Directive[] = [];
  for (const comment of comments) {
    const body = comment.text.replace(/^(--|#|\/\*)/, '').replace(/\*\/$/, '').trim();
    if (!/^cutover:/i.test(body)) continue;
    const m = DIRECTIVE_RE.exec(body);
    if (m !== null) out.push({ comment, name: m[1].toLowerCase(), args: m[2].trim() });
  }
  return out;
}

/** The statement a suppression comment belongs to: the one it is inside, ends the comment's line, or comes next. */
function targetOf(sql: string, comment: SqlComment, statements: AnalysedStatement[]): AnalysedStatement | undefined {
  const inside = statements.find((s) => comment.start >= s.start && comment.start < s.end);
  if (inside !== undefined) return inside;
  const before = statements.filter((s) => s.end <= comment.start).pop();
  if (before !== undefined && positionOf(sql, before.end).line === positionOf(sql, comment.start).line) return before;
  return statements.find((s) => s.start >= comment.end);
}

function buildFindings(sql: string, file: string, engine: Engine, phase: Phase, analysis: Analysis): Finding[] {
  const findings: Finding[] = [];
  const directiveFinding = (rule: RuleId, d: Directive, message: string): void => {
    const { line, column } = positionOf(sql, d.comment.start);
    const r = ruleFor(rule, engine);
    findings.push({ file, line, column, rule, severity: r.severity[phase], message, why: r.why, fix: r.fix, statement: oneLine(d.comment.text) });
  };

  const allows: Allow[] = [];
  for (const d of directivesIn(analysis.comments)) {
    if (!KNOWN_DIRECTIVES.has(d.name)) {
      directiveFinding('invalid-directive', d, `unknown directive cutover:${d.name}`);
      continue;
    }
    if (d.name !== 'allow') continue;
    const [ruleList = '', ...rest] = d.args.split(/\s+/);
    const rules = ruleList.split(',').filter((r) => r !== '');
    const unknown = rules.filter((r) => !isRuleId(r) || getRule(r).kind === 'directive');
    if (rules.length === 0 || unknown.length > 0) {
      directiveFinding('invalid-directive', d, rules.length === 0 ? 'cutover:allow names no rule' : `cutover:allow names unknown rule ${unknown.join(', ')}`);
      continue;
    }
    const reason = rest.join(' ').trim();
    if (reason === '') {
      directiveFinding('suppression-without-reason', d, `cutover:allow ${ruleList} has no reason, so it suppresses nothing`);
      continue;
    }
    allows.push({ directive: d, rules, reason, statement: targetOf(sql, d.comment, analysis.statements), used: false });
  }

  for (const s of analysis.statements) {
    const { line, column } = positionOf(sql, s.start);
    for (const h of s.hits) {
      const r = ruleFor(h.rule, engine);
      const severity = r.severity[phase];
      let message = h.message;
      // Fail closed: what the linter cannot see keeps the rule's severity (issue 17); the note says why.
      if (h.uncertain !== undefined) message = `${message} (${h.uncertain})`;
      const finding: Finding = { file, line, column, rule: h.rule, severity, message, why: r.why, fix: r.fix, statement: oneLine(s.text) };
      const allow = allows.find((a) => a.statement === s && a.rules.includes(h.rule));
      if (allow !== undefined) {
        allow.used = true;
        finding.suppressed = { reason: allow.reason };
      }
      findings.push(finding);
    }
  }

  for (const a of allows) {
    if (!a.used) directiveFinding('unused-suppression', a.directive, `cutover:allow ${a.rules.join(',')} matches no finding on ${a.statement === undefined ? 'any statement' : `the statement at line ${positionOf(sql, a.statement.start).line}`}`);
  }
  return findings.sort((x, y) => x.line - y.line || (x.column ?? 0) - (y.column ?? 0));
}

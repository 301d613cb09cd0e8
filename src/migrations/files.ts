/**
 * A release's migration files: listed in name order, each with its phase (`phaseOf`), a SHA-256
 * checksum of its bytes, and its statements with the line each starts on (split by the same
 * parsers the linter uses, so a `DO $$ … $$` body or a MySQL `DELIMITER` block stays whole).
 * Reads files only; never connects to a database.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CutoverError } from '../lib/errors.ts';
import { phaseOf, type Phase } from './lint.ts';
import { splitMysql } from './mysql-tokens.ts';
import { analysePostgres } from './postgres.ts';
import { SchemaState } from './schema.ts';
import { positionOf, SqlParseFailure } from './source.ts';
import type { DbEngine } from '../config/database.ts';

export interface MigrationFile {
  /** File name, e.g. `002_add_email.expand.sql`; the key in the tracking table. */
  name: string;
  /** Absolute path. */
  path: string;
  phase: Phase;
  checksum: string;
  sql: string;
}

export interface Statement {
  /** 1-based line where the statement starts. */
  line: number;
  text: string;
}

/** The migration files of a release (`*.sql`, sorted by name); empty when the folder does not exist. */
export async function readMigrations(dir: string): Promise<MigrationFile[]> {
  if (!existsSync(dir)) return [];
  const names = (await readdir(dir)).filter((n) => n.toLowerCase().endsWith('.sql')).sort(byName);
  const files: MigrationFile[] = [];
  for (const name of names) {
    const p = path.join(dir, name);
    const sql = await readFile(p, 'utf8');
    files.push({ name, path: p, phase: phaseOf(name, sql), checksum: checksumOf(sql), sql });
  }
  return files;
}

/** Plain code-unit order: `001_a` < `002_b` < `010_c` as long as numbers are zero-padded. */
export function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function checksumOf(sql: string): string {
  return createHash('sha256').update(sql, 'utf8').digest('hex');
}

/** The file's statements in order. Throws CUTOVER_ERR_MIGRATION naming file:line when it does not parse. */
export async function statementsOf(file: Pick<MigrationFile, 'name' | 'sql'>, engine: DbEngine): Promise<Statement[]> {
  const { sql } = file;
  try {
    if (engine === 'postgres') {
      const analysis = await analysePostgres(sql, { schema: new SchemaState(), transactionWrapped: false });
      return analysis.statements.map((s) => ({ line: positionOf(sql, s.start).line, text: s.text }));
    }
    return splitMysql(sql).statements.map((s) => ({ line: positionOf(sql, s.start).line, text: sql.slice(s.start, s.end) }));
  } catch (err) {
    if (!(err instanceof SqlParseFailure)) throw err;
    const { line } = positionOf(sql, err.offset);
    throw new CutoverError('CUTOVER_ERR_MIGRATION', `${file.name}:${line}: ${engine} parse error: ${err.message}`, { cause: err, details: { file: file.name, line } });
  }
}

/**
 * Whether the runner wraps the file in one transaction: not when the file says
 * `-- cutover:transaction none`, manages its own (`BEGIN`/`COMMIT`), or holds a statement
 * PostgreSQL refuses inside one (`… CONCURRENTLY`, `VACUUM`, `CREATE DATABASE`,
 * `ALTER TYPE … ADD VALUE` before PostgreSQL 12). MySQL DDL commits implicitly, so never there.
 */
export function runsInTransaction(sql: string, statements: Statement[], engine: DbEngine): boolean {
  if (engine === 'mysql') return false;
  if (/^[ \t]*--[ \t]*cutover:transaction[ \t]+none\b/im.test(sql)) return false;
  return !statements.some((s) => /^(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE)\b/i.test(s.text) || /\bCONCURRENTLY\b/i.test(s.text));
}

/**
 * Shared shapes between the engine analysers and the linter, and helpers for positions in
 * SQL text. Offsets here are always JavaScript string (UTF-16) offsets; converting the
 * PostgreSQL parser's byte offsets happens once, in `postgres.ts`.
 */
import type { RuleId } from './rules.ts';

/** A comment in the file: `start`/`end` are string offsets, `text` includes its markers. */
export interface SqlComment {
  start: number;
  end: number;
  text: string;
}

/** One rule hit on one statement, before phase, severity and suppression are applied. */
export interface Hit {
  rule: RuleId;
  /** What this statement does, specifically ("drops column users.email"). */
  message: string;
  /** When set, the finding is reported one step milder (error → warning), and this says why. */
  uncertain?: string;
}

export interface AnalysedStatement {
  /** Offset of the statement's first token (leading comments excluded). */
  start: number;
  /** Offset just past the statement's last token (the `;` excluded). */
  end: number;
  text: string;
  hits: Hit[];
  /** Takes a lock that queues other queries on a live table (feeds missing-lock-timeout). */
  locking: boolean;
  /** Sets a non-zero lock timeout (`set`) or turns it off again (`cleared`: 0, RESET, DEFAULT). */
  lockTimeout?: 'set' | 'cleared';
}

export interface Analysis {
  statements: AnalysedStatement[];
  comments: SqlComment[];
}

/** Thrown by an analyser when the SQL does not parse; `offset` is a string offset. */
export class SqlParseFailure extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.name = 'SqlParseFailure';
    this.offset = offset;
  }
}

/** 1-based line and column of a string offset. */
export function positionOf(sql: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.max(0, Math.min(offset, sql.length));
  for (let i = 0; i < end; i++) {
    if (sql.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

/** The statement text collapsed to one line, for messages and JSON. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** Lower-cased identifier, the way both engines compare unquoted names. */
export function ident(name: string): string {
  return name.toLowerCase();
}

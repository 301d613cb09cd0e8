/**
 * MySQL/MariaDB lexing for the migration linter: splits a file into statements and
 * comments, and reads DDL at token level where the SQL parser gives up. It recognises the
 * DDL the rules care about (CREATE/ALTER/DROP/RENAME TABLE, CREATE/DROP INDEX, SET); any
 * other statement is left as `other`. Never guesses at statements it cannot read.
 */
import type { ColumnType } from './schema.ts';
import { ident, SqlParseFailure, type SqlComment } from './source.ts';

export interface Token {
  kind: 'word' | 'ident' | 'string' | 'number' | 'punct';
  /** Words upper-cased; quoted identifiers and strings unquoted. */
  value: string;
  start: number;
  end: number;
}

export interface RawStatement {
  start: number;
  end: number;
  tokens: Token[];
}

/** Splits MySQL text into statements (honouring DELIMITER) and comments. */
export function splitMysql(sql: string): { statements: RawStatement[]; comments: SqlComment[] } {
  const comments: SqlComment[] = [];
  const statements: RawStatement[] = [];
  let current: Token[] = [];
  let delimiter = ';';
  let i = 0;
  const flush = (): void => {
    if (current.length > 0) statements.push({ start: current[0].start, end: current[current.length - 1].end, tokens: current });
    current = [];
  };
  const atLineStart = (pos: number): boolean => /(^|\n)[ \t]*$/.test(sql.slice(Math.max(0, pos - 200), pos));
  while (i < sql.length) {
    const ch = sql[i];
    const rest2 = sql.slice(i, i + 2);
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === '#' || (rest2 === '--' && (i + 2 >= sql.length || /\s/.test(sql[i + 2])))) {
      const end = sql.indexOf('\n', i);
      const stop = end === -1 ? sql.length : end;
      comments.push({ start: i, end: stop, text: sql.slice(i, stop) });
      i = stop;
    } else if (rest2 === '/*') {
      const end = sql.indexOf('*/', i + 2);
      if (end === -1) throw new SqlParseFailure('unterminated /* comment', i);
      comments.push({ start: i, end: end + 2, text: sql.slice(i, end + 2) });
      i = end + 2;
    } else if (current.length === 0 && atLineStart(i) && /^DELIMITER[ \t]+\S/i.test(sql.slice(i, i + 12))) {
      const end = sql.indexOf('\n', i);
      const stop = end === -1 ? sql.length : end;
      delimiter = sql.slice(i, stop).trim().split(/\s+/)[1] ?? ';';
      i = stop;
    } else if (sql.startsWith(delimiter, i)) {
      flush();
      i += delimiter.length;
    } else if (ch === "'" || ch === '"' || ch === '`') {
      let j = i + 1;
      let value = '';
      for (;;) {
        if (j >= sql.length) throw new SqlParseFailure(`unterminated ${ch} quote`, i);
        const c = sql[j];
        if (c === '\\' && ch !== '`') {
          value += sql[j + 1] ?? '';
          j += 2;
        } else if (c === ch && sql[j + 1] === ch) {
          value += ch;
          j += 2;
        } else if (c === ch) {
          j++;
          break;
        } else {
          value += c;
          j++;
        }
      }
      current.push({ kind: ch === '`' ? 'ident' : 'string', value, start: i, end: j });
      i = j;
    } else if (/[A-Za-z0-9_$@]/.test(ch)) {
      const m = /^[A-Za-z0-9_$@.]+/.exec(sql.slice(i, i + 256)) ?? [''];
      // A dotted name (db.table) stays one word; strip a trailing dot belonging to punctuation.
      const text = m[0];
      current.push({ kind: /^[0-9.]+$/.test(text) ? 'number' : 'word', value: text.toUpperCase(), start: i, end: i + text.length });
      i += text.length;
    } else {
      current.push({ kind: 'punct', value: ch, start: i, end: i + 1 });
      i++;
    }
  }
  flush();
  return { statements, comments };
}

/** An identifier's name as written (the lexer upper-cases words; names compare lower-cased). */
export function nameOf(t: Token | undefined, sql: string): string {
  if (t === undefined) return '';
  return t.kind === 'word' ? sql.slice(t.start, t.end) : t.value;
}

export interface MyColumn {
  name: string;
  type?: ColumnType;
  notNull: boolean;
  hasDefault: boolean;
  autoIncrement: boolean;
  unique: boolean;
  primary: boolean;
  check: boolean;
}

export type AlterOp =
  | { op: 'add-column'; column: MyColumn }
  | { op: 'drop-column'; name: string }
  | { op: 'change-column'; from: string; column: MyColumn }
  | { op: 'rename-column'; from: string; to: string }
  | { op: 'rename-table'; to: string }
  | { op: 'add-index'; unique: boolean; primary: boolean }
  | { op: 'add-foreign-key' }
  | { op: 'add-check' }
  | { op: 'drop-default'; column: string; toNull?: boolean }
  | { op: 'other' };

export type MyStatement =
  | { kind: 'create-table'; table: string; columns: MyColumn[] }
  | { kind: 'alter-table'; table: string; ops: AlterOp[]; online: boolean }
  | { kind: 'create-index'; table: string; unique: boolean; online: boolean }
  | { kind: 'drop-index'; table: string }
  | { kind: 'drop-table'; tables: string[] }
  | { kind: 'rename-table'; pairs: [string, string][] }
  | { kind: 'lock-wait-timeout'; zero: boolean }
  | { kind: 'create-trigger'; name: string; table: string }
  | { kind: 'replace-view'; view: string }
  | { kind: 'other' };

const is = (t: Token | undefined, ...words: string[]): boolean => t !== undefined && t.kind === 'word' && words.includes(t.value);

/** Splits tokens on commas outside parentheses. */
function splitTopLevel(tokens: Token[]): Token[][] {
  const parts: Token[][] = [[]];
  let depth = 0;
  for (const t of tokens) {
    if (t.kind === 'punct' && t.value === '(') depth++;
    if (t.kind === 'punct' && t.value === ')') depth--;
    if (depth === 0 && t.kind === 'punct' && t.value === ',') parts.push([]);
    else parts[parts.length - 1].push(t);
  }
  return parts.filter((p) => p.length > 0);
}

/** ALGORITHM=INPLACE|INSTANT and LOCK=NONE both present: the server refuses rather than locks. */
function isOnline(tokens: Token[]): boolean {
  const valueAfter = (kw: string): string | undefined => {
    const i = tokens.findIndex((t) => is(t, kw));
    if (i === -1) return undefined;
    const v = tokens[i + 1]?.value === '=' ? tokens[i + 2] : tokens[i + 1];
    return v?.value.toUpperCase();
  };
  const algorithm = valueAfter('ALGORITHM');
  return (algorithm === 'INPLACE' || algorithm === 'INSTANT') && valueAfter('LOCK') === 'NONE';
}

/** Reads `type [(args)] [UNSIGNED…] [NOT NULL] [DEFAULT …] …` starting at tokens[0]. */
export function readColumnDef(name: string, tokens: Token[]): MyColumn {
  const col: MyColumn = { name, notNull: false, hasDefault: false, autoIncrement: false, unique: false, primary: false, check: false };
  const typeTok = tokens[0];
  if (typeTok !== undefined && typeTok.kind === 'word') {
    const type: ColumnType = { name: typeTok.value.toLowerCase(), mods: [] };
    if (tokens[1]?.value === '(') {
      const close = tokens.findIndex((t, k) => k > 1 && t.value === ')');
      const args = tokens.slice(2, close === -1 ? tokens.length : close).filter((t) => t.value !== ',');
      if (type.name === 'enum' || type.name === 'set') type.values = args.map((t) => t.value);
      else type.mods = args.flatMap((t) => (t.kind === 'number' ? [Number(t.value)] : []));
    }
    type.name = type.name === 'character' && is(tokens[1], 'VARYING') ? 'varchar' : type.name;
    col.type = type;
  }
  for (let k = 1; k < tokens.length; k++) {
    const t = tokens[k];
    if (is(t, 'NOT') && is(tokens[k + 1], 'NULL')) col.notNull = true;
    else if (is(t, 'DEFAULT')) col.hasDefault = true;
    else if (is(t, 'AUTO_INCREMENT')) col.autoIncrement = true;
    else if (is(t, 'PRIMARY')) {
      col.primary = true;
      col.notNull = true;
    } else if (is(t, 'UNIQUE')) col.unique = true;
    else if (is(t, 'CHECK')) col.check = true;
    else if (is(t, 'AS', 'GENERATED')) col.hasDefault = true;
  }
  return col;
}

function readAlterClause(clause: Token[], sql: string): AlterOp {
  const [a, b, c] = clause;
  if (is(a, 'ADD')) {
    let k = 1;
    if (is(clause[k], 'CONSTRAINT')) k += clause[k + 1] !== undefined && !is(clause[k + 1], 'PRIMARY', 'UNIQUE', 'FOREIGN', 'CHECK') ? 2 : 1;
    const t = clause[k];
    if (is(t, 'PRIMARY')) return { op: 'add-index', unique: true, primary: true };
    if (is(t, 'UNIQUE')) return { op: 'add-index', unique: true, primary: false };
    if (is(t, 'FOREIGN')) return { op: 'add-foreign-key' };
    if (is(t, 'CHECK')) return { op: 'add-check' };
    if (is(t, 'INDEX', 'KEY', 'FULLTEXT', 'SPATIAL')) return { op: 'add-index', unique: false, primary: false };
    const at = is(b, 'COLUMN') ? 2 : 1;
    if (clause[at]?.value === '(') return { op: 'other' };
    return { op: 'add-column', column: readColumnDef(nameOf(clause[at], sql), clause.slice(at + 1)) };
  }
  if (is(a, 'DROP')) {
    if (is(b, 'INDEX', 'KEY', 'PRIMARY', 'FOREIGN', 'CONSTRAINT', 'CHECK', 'PARTITION')) return { op: 'other' };
    return { op: 'drop-column', name: nameOf(is(b, 'COLUMN') ? c : b, sql) };
  }
  if (is(a, 'CHANGE')) {
    const at = is(b, 'COLUMN') ? 2 : 1;
    return { op: 'change-column', from: nameOf(clause[at], sql), column: readColumnDef(nameOf(clause[at + 1], sql), clause.slice(at + 2)) };
  }
  if (is(a, 'MODIFY')) {
    const at = is(b, 'COLUMN') ? 2 : 1;
    const name = nameOf(clause[at], sql);
    return { op: 'change-column', from: name, column: readColumnDef(name, clause.slice(at + 1)) };
  }
  if (is(a, 'RENAME')) {
    if (is(b, 'COLUMN')) return { op: 'rename-column', from: nameOf(c, sql), to: nameOf(clause[4], sql) };
    if (is(b, 'INDEX', 'KEY')) return { op: 'other' };
    return { op: 'rename-table', to: nameOf(is(b, 'TO', 'AS') ? c : b, sql) };
  }
  if (is(a, 'ALTER')) {
    const at = is(b, 'COLUMN') ? 2 : 1;
    if (is(clause[at + 1], 'DROP') && is(clause[at + 2], 'DEFAULT')) return { op: 'drop-default', column: nameOf(clause[at], sql) };
    if (is(clause[at + 1], 'SET') && is(clause[at + 2], 'DEFAULT') && is(clause[at + 3], 'NULL') && clause.length === at + 4) return { op: 'drop-default', column: nameOf(clause[at], sql), toNull: true };
  }
  return { op: 'other' };
}

/** Reads a statement the SQL parser could not: the DDL the rules need, `other` for the rest. */
export function readStatementTokens(tokens: Token[], sql: string): MyStatement {
  const [a, b] = tokens;
  const special = readTriggerOrView(tokens, sql);
  if (special !== null) return special;
  if (is(a, 'ALTER') && is(b, 'TABLE', 'ONLINE', 'IGNORE')) {
    const at = tokens.findIndex((t) => is(t, 'TABLE'));
    const ops = splitTopLevel(tokens.slice(at + 2)).map((c) => readAlterClause(c, sql));
    return { kind: 'alter-table', table: nameOf(tokens[at + 1], sql), ops, online: isOnline(tokens) };
  }
  if (is(a, 'CREATE')) {
    const tableAt = tokens.findIndex((t) => is(t, 'TABLE'));
    const indexAt = tokens.findIndex((t) => is(t, 'INDEX'));
    if (tableAt !== -1 && (indexAt === -1 || tableAt < indexAt)) {
      let k = tableAt + 1;
      if (is(tokens[k], 'IF')) k += 3;
      const table = nameOf(tokens[k], sql);
      const open = tokens.findIndex((t, n) => n > k && t.value === '(');
      const inner = open === -1 ? [] : tokens.slice(open + 1, tokens.length - 1);
      const columns = splitTopLevel(inner)
        .filter((d) => !is(d[0], 'PRIMARY', 'UNIQUE', 'KEY', 'INDEX', 'CONSTRAINT', 'FOREIGN', 'CHECK', 'FULLTEXT', 'SPATIAL'))
        .map((d) => readColumnDef(nameOf(d[0], sql), d.slice(1)));
      return { kind: 'create-table', table, columns };
    }
    if (indexAt !== -1) {
      const on = tokens.findIndex((t) => is(t, 'ON'));
      return { kind: 'create-index', table: nameOf(tokens[on + 1], sql), unique: tokens.slice(0, indexAt).some((t) => is(t, 'UNIQUE')), online: isOnline(tokens) };
    }
  }
  if (is(a, 'DROP') && is(b, 'TABLE', 'TEMPORARY')) {
    if (is(b, 'TEMPORARY')) return { kind: 'other' };
    let k = 2;
    if (is(tokens[k], 'IF')) k += 2;
    const tables = splitTopLevel(tokens.slice(k).filter((t) => !is(t, 'RESTRICT', 'CASCADE'))).map((p) => nameOf(p[0], sql));
    return { kind: 'drop-table', tables };
  }
  if (is(a, 'DROP') && is(b, 'INDEX')) {
    const on = tokens.findIndex((t) => is(t, 'ON'));
    return { kind: 'drop-index', table: nameOf(tokens[on + 1], sql) };
  }
  if (is(a, 'RENAME') && is(b, 'TABLE', 'TABLES')) {
    const pairs = splitTopLevel(tokens.slice(2)).map((p): [string, string] => [nameOf(p[0], sql), nameOf(p[2], sql)]);
    return { kind: 'rename-table', pairs };
  }
  if (is(a, 'SET')) {
    const i = tokens.findIndex((t) => t.kind === 'word' && /(^|\.)LOCK_WAIT_TIMEOUT$/.test(t.value.replace(/^@@/, '')));
    if (i !== -1) {
      const v = tokens[i + 1]?.value === '=' || is(tokens[i + 1], 'TO') ? tokens[i + 2] : tokens[i + 1];
      return { kind: 'lock-wait-timeout', zero: v === undefined || Number(v.value) === 0 };
    }
  }
  return { kind: 'other' };
}

export function tableKey(name: string): string {
  return ident(name.split('.').pop() ?? name);
}

/**
 * `CREATE [DEFINER=…] TRIGGER name {BEFORE|AFTER} {INSERT|UPDATE|DELETE} ON table …`, and
 * `CREATE OR REPLACE [options] VIEW name` / `ALTER [options] VIEW name` (a view replaced). Null otherwise.
 */
export function readTriggerOrView(tokens: Token[], sql: string): MyStatement | null {
  const words = tokens.map((t) => (t.kind === 'word' ? t.value : ''));
  if (!is(tokens[0], 'CREATE', 'ALTER')) return null;
  const trig = words.indexOf('TRIGGER');
  if (is(tokens[0], 'CREATE') && trig > 0 && trig < 8 && !words.slice(1, trig).includes('TABLE')) {
    const on = words.indexOf('ON', trig);
    if (on > trig && tokens[on + 1] !== undefined) return { kind: 'create-trigger', name: nameOf(tokens[trig + 1], sql), table: nameOf(tokens[on + 1], sql) };
  }
  const view = words.indexOf('VIEW');
  if (view > 0 && view < 12 && !words.slice(1, view).includes('TABLE')) {
    const replaces = is(tokens[0], 'ALTER') || (is(tokens[1], 'OR') && is(tokens[2], 'REPLACE'));
    if (replaces && tokens[view + 1] !== undefined) return { kind: 'replace-view', view: nameOf(tokens[view + 1], sql) };
  }
  return null;
}

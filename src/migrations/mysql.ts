/**
 * MySQL/MariaDB analysis: each statement is read with node-sql-parser (its MySQL grammar,
 * then its MariaDB grammar), and with the token reader in `mysql-tokens.ts` when neither
 * grammar accepts it (e.g. ALTER COLUMN … DROP DEFAULT, FOREIGN KEY in MariaDB mode, vendor
 * options). Both produce the same statement shapes, so the rules below see one model.
 * Never executes SQL.
 */
import { createRequire } from 'node:module';
import { formatType, type ColumnType, type SchemaState } from './schema.ts';
import { readStatementTokens, readTriggerOrView, splitMysql, tableKey, type AlterOp, type MyColumn, type MyStatement, type RawStatement } from './mysql-tokens.ts';
import { SqlParseFailure, type AnalysedStatement, type Analysis, type Hit } from './source.ts';

interface SqlParser {
  astify(sql: string, opt?: { database?: string }): unknown;
}
type ParserModule = { Parser: new () => SqlParser };

// Load only the MySQL and MariaDB grammars (≈270 kB each), not the package's all-dialect bundle.
const require = createRequire(import.meta.url);
let grammars: { name: string; parser: SqlParser }[] | undefined;
function parsers(): { name: string; parser: SqlParser }[] {
  grammars ??= [
    { name: 'MySQL', parser: new (require('node-sql-parser/build/mysql') as ParserModule).Parser() },
    { name: 'MariaDB', parser: new (require('node-sql-parser/build/mariadb') as ParserModule).Parser() },
  ];
  return grammars;
}

export interface MysqlContext {
  schema: SchemaState;
}

/** How a statement was read, for tests and debugging. */
export type ReadBy = 'MySQL' | 'MariaDB' | 'tokens';

export function readMysqlStatement(raw: RawStatement, sql: string): { statement: MyStatement; readBy: ReadBy } {
  const text = sql.slice(raw.start, raw.end);
  // Triggers and replaced views: read from the tokens (the parsers' ASTs for them vary by grammar).
  const special = readTriggerOrView(raw.tokens, sql);
  if (special !== null) return { statement: special, readBy: 'tokens' };
  let firstError: { message: string; offset: number } | undefined;
  for (const { name, parser } of parsers()) {
    let ast: unknown;
    try {
      ast = parser.astify(text, { database: name });
    } catch (err) {
      const offset = (err as { location?: { start?: { offset?: number } } }).location?.start?.offset ?? 0;
      firstError ??= { message: err instanceof Error ? err.message : String(err), offset };
      continue;
    }
    const statement = fromAst(Array.isArray(ast) ? ast[0] : ast);
    if (statement !== undefined) return { statement, readBy: name as ReadBy };
  }
  const statement = readStatementTokens(raw.tokens, sql);
  if (statement.kind === 'other' && firstError !== undefined && isMistypedDdl(raw)) {
    throw new SqlParseFailure(firstError.message, raw.start + firstError.offset);
  }
  return { statement, readBy: 'tokens' };
}

/** Objects MySQL/MariaDB DDL can name after ALTER/CREATE/DROP/RENAME (or words that may precede them). */
const DDL_OBJECTS = new Set(
  ('TABLE TABLES INDEX UNIQUE FULLTEXT SPATIAL VIEW TRIGGER PROCEDURE FUNCTION EVENT DATABASE SCHEMA USER ROLE TEMPORARY OR ' +
    'DEFINER ALGORITHM SQL ONLINE OFFLINE IGNORE SEQUENCE TABLESPACE SERVER LOGFILE INSTANCE RESOURCE AGGREGATE IF PACKAGE ' +
    'UNDO SPATIAL').split(' '),
);

/** ALTER/CREATE/DROP/RENAME followed by a word that names no object: a typo, reported as a parse error. */
function isMistypedDdl(raw: RawStatement): boolean {
  const [verb, object] = raw.tokens;
  if (verb?.kind !== 'word' || !['ALTER', 'CREATE', 'DROP', 'RENAME'].includes(verb.value)) return false;
  return object === undefined || object.kind !== 'word' || !DDL_OBJECTS.has(object.value);
}

export function analyseMysql(sql: string, ctx: MysqlContext): Analysis {
  const { statements: raws, comments } = splitMysql(sql);
  const file = new MysqlFileState(ctx.schema);
  const statements: AnalysedStatement[] = raws.map((raw) => {
    const { statement } = readMysqlStatement(raw, sql);
    return { start: raw.start, end: raw.end, text: sql.slice(raw.start, raw.end), ...file.analyse(statement) };
  });
  return { statements, comments };
}

type StatementResult = Omit<AnalysedStatement, 'start' | 'end' | 'text'>;

class MysqlFileState {
  readonly #schema: SchemaState;
  readonly #created = new Set<string>();

  constructor(schema: SchemaState) {
    this.#schema = schema;
  }

  analyse(s: MyStatement): StatementResult {
    const result: StatementResult = { hits: [], locking: false };
    const hit = (h: Hit): void => {
      result.hits.push(h);
    };
    switch (s.kind) {
      case 'create-table':
        this.#created.add(tableKey(s.table));
        this.#schema.createTable(tableKey(s.table), s.columns.map((c) => [c.name, { type: c.type, notNull: c.notNull }]));
        break;
      case 'alter-table': {
        const isNew = this.#created.has(tableKey(s.table));
        result.locking = !isNew;
        for (const op of s.ops) this.#alter(s.table, op, s.online, isNew, hit);
        break;
      }
      case 'create-index':
        if (this.#created.has(tableKey(s.table))) break;
        result.locking = true;
        if (s.unique) {
          hit({ rule: 'add-unique-constraint', message: `creates a unique index on ${s.table}${s.online ? '' : ' without ALGORITHM=INPLACE, LOCK=NONE'}` });
          hit({ rule: 'constraint-rejects-old-writes', message: `creates a unique index on ${s.table}: a duplicate the old version writes is rejected (and the build fails if duplicates exist)` });
        } else if (!s.online) hit({ rule: 'index-not-concurrent', message: `creates an index on ${s.table} without ALGORITHM=INPLACE, LOCK=NONE` });
        break;
      case 'drop-index':
        result.locking = !this.#created.has(tableKey(s.table));
        break;
      case 'drop-table':
        for (const t of s.tables) {
          this.#schema.dropTable(tableKey(t));
          if (this.#created.has(tableKey(t))) continue;
          result.locking = true;
          hit({ rule: 'drop-table', message: `drops table ${t}` });
        }
        break;
      case 'rename-table':
        for (const [from, to] of s.pairs) {
          this.#schema.renameTable(tableKey(from), tableKey(to));
          if (this.#created.has(tableKey(from))) {
            this.#created.add(tableKey(to));
            continue;
          }
          result.locking = true;
          hit({ rule: 'rename-table', message: `renames table ${from} to ${to}` });
        }
        break;
      case 'lock-wait-timeout':
        result.lockTimeout = s.zero ? 'cleared' : 'set';
        break;
      case 'create-trigger':
        if (this.#created.has(tableKey(s.table))) break;
        result.locking = true;
        hit({ rule: 'create-trigger', message: `creates trigger ${s.name} on ${s.table}, which runs on every write of the old version too` });
        break;
      case 'replace-view':
        if (this.#created.has(tableKey(s.view))) break;
        hit({ rule: 'replace-view', message: `replaces view ${s.view}, which the old version may read: MySQL lets the replacement change every column` });
        break;
      case 'other':
        break;
    }
    return result;
  }

  #alter(table: string, op: AlterOp, online: boolean, isNew: boolean, hit: (h: Hit) => void): void {
    const key = tableKey(table);
    switch (op.op) {
      case 'add-column': {
        const c = op.column;
        this.#schema.setColumn(key, c.name, { type: c.type, notNull: c.notNull });
        if (isNew) return;
        if (c.notNull && !c.hasDefault && !c.autoIncrement) hit({ rule: 'add-not-null-column', message: `adds NOT NULL column ${table}.${c.name} without a default` });
        if (c.unique || c.primary) hit({ rule: 'add-unique-constraint', message: `adds ${table}.${c.name} with an inline ${c.primary ? 'PRIMARY KEY' : 'UNIQUE'} index` });
        if (c.check) hit({ rule: 'add-constraint-validates', message: `adds ${table}.${c.name} with an inline CHECK, which validates every row` });
        return;
      }
      case 'drop-column':
        this.#schema.dropColumn(key, op.name);
        if (!isNew) hit({ rule: 'drop-column', message: `drops column ${table}.${op.name}` });
        return;
      case 'change-column': {
        const before = this.#schema.column(key, op.from);
        this.#schema.dropColumn(key, op.from);
        this.#schema.setColumn(key, op.column.name, { type: op.column.type ?? before?.type, notNull: op.column.notNull });
        if (isNew) return;
        if (op.column.name.toLowerCase() !== op.from.toLowerCase()) hit({ rule: 'rename-column', message: `renames column ${table}.${op.from} to ${op.column.name} (CHANGE)` });
        this.#redefine(`${table}.${op.column.name}`, before, op.column, hit);
        return;
      }
      case 'rename-column':
        this.#schema.renameColumn(key, op.from, op.to);
        if (!isNew) hit({ rule: 'rename-column', message: `renames column ${table}.${op.from} to ${op.to}` });
        return;
      case 'rename-table':
        this.#schema.renameTable(key, tableKey(op.to));
        if (isNew) this.#created.add(tableKey(op.to));
        else hit({ rule: 'rename-table', message: `renames table ${table} to ${op.to}` });
        return;
      case 'add-index':
        if (isNew) return;
        if (op.unique) {
          hit({ rule: 'add-unique-constraint', message: `adds a ${op.primary ? 'PRIMARY KEY' : 'UNIQUE'} index on ${table}${online ? '' : ' without ALGORITHM=INPLACE, LOCK=NONE'}` });
          hit({ rule: 'constraint-rejects-old-writes', message: `adds a ${op.primary ? 'PRIMARY KEY' : 'UNIQUE'} index on ${table}: a duplicate the old version writes is rejected` });
        } else if (!online) hit({ rule: 'index-not-concurrent', message: `adds an index on ${table} without ALGORITHM=INPLACE, LOCK=NONE` });
        return;
      case 'add-foreign-key':
        if (!isNew) hit({ rule: 'add-constraint-validates', message: `adds a FOREIGN KEY on ${table}; MySQL has no NOT VALID, so every row is checked` });
        return;
      case 'add-check':
        if (isNew) return;
        hit({ rule: 'add-constraint-validates', message: `adds a CHECK on ${table}; MySQL has no NOT VALID, so every row is checked` });
        hit({ rule: 'constraint-rejects-old-writes', message: `adds a CHECK on ${table}: every write of the old version must satisfy it` });
        return;
      case 'drop-default':
        if (!isNew) hit({ rule: 'drop-default', message: op.toNull ? `sets the default of ${table}.${op.column} to NULL, which drops it` : `drops the default of ${table}.${op.column}` });
        return;
      case 'other':
        return;
    }
  }

  /** MODIFY/CHANGE restate the whole column: compare with what the linted files defined. */
  #redefine(where: string, before: { type?: ColumnType; notNull: boolean } | undefined, after: MyColumn, hit: (h: Hit) => void): void {
    const to = after.type;
    if (to === undefined) return;
    if (before?.type === undefined) {
      const rule = to.values !== undefined ? 'enum-value-change' : 'change-column-type';
      hit({
        rule,
        message: `redefines ${where} as ${formatType(to)}${after.notNull ? ' NOT NULL' : ''}`,
        uncertain: 'the current definition is neither in the linted files nor shown by the database, so a type, enum or nullability change cannot be ruled out: this fails closed; if it only widens the column, suppress with that reason',
      });
      return;
    }
    const from = before.type;
    if (from.values !== undefined && to.values !== undefined) {
      const appended = from.values.every((v, k) => to.values?.[k] === v);
      if (!appended) hit({ rule: 'enum-value-change', message: `changes ${where} from ${formatType(from)} to ${formatType(to)}, which removes, renames or reorders values` });
    } else if (!isInPlaceWidening(from, to)) {
      hit({ rule: 'change-column-type', message: `changes the type of ${where} from ${formatType(from)} to ${formatType(to)}` });
    }
    if (after.notNull && !before.notNull) hit({ rule: 'set-not-null', message: `makes ${where} NOT NULL` });
  }
}

/**
 * Same type, or a VARCHAR widening that keeps its length-prefix size (MySQL changes it in
 * place only then). Assumes utf8mb4 (4 bytes a character): up to 63 characters fit the
 * one-byte prefix (255 bytes).
 */
export function isInPlaceWidening(from: ColumnType, to: ColumnType): boolean {
  const norm = (n: string): string => (n === 'integer' ? 'int' : n === 'dec' || n === 'numeric' ? 'decimal' : n);
  if (norm(from.name) !== norm(to.name)) return false;
  if (from.mods.join(',') === to.mods.join(',')) return true;
  if (from.name === 'varchar' && from.mods.length > 0 && to.mods.length > 0) {
    const [a, b] = [from.mods[0], to.mods[0]];
    return b >= a && a <= 63 === b <= 63;
  }
  return false;
}

// ---- node-sql-parser AST → statement shapes. Returns undefined for anything unfamiliar,
// so the token reader takes over rather than a half-understood AST being trusted.

type J = Record<string, unknown>;
const obj = (v: unknown): J | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as J) : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function columnName(v: unknown): string | undefined {
  const o = obj(v);
  const c = o?.['column'];
  if (typeof c === 'string') return c;
  const expr = obj(obj(c)?.['expr']);
  return str(expr?.['value']);
}

function tableName(v: unknown): string | undefined {
  const o = obj(v);
  const t = str(o?.['table']);
  if (t === undefined) return undefined;
  const db = str(o?.['db']);
  return db !== undefined && db !== '' ? `${db}.${t}` : t;
}

function astColumn(def: J): MyColumn | undefined {
  const name = columnName(def['column']);
  const d = obj(def['definition']);
  const dataType = str(d?.['dataType']);
  if (name === undefined || d === undefined || dataType === undefined) return undefined;
  const type: ColumnType = { name: dataType.toLowerCase(), mods: [] };
  if (typeof d['length'] === 'number') type.mods.push(d['length']);
  if (typeof d['scale'] === 'number') type.mods.push(d['scale']);
  const values = arr(obj(d['expr'])?.['value']).map((v) => str(obj(v)?.['value']));
  if (type.name === 'enum' || type.name === 'set') {
    if (values.some((v) => v === undefined)) return undefined;
    type.values = values as string[];
  }
  const nullable = str(obj(def['nullable'])?.['type']);
  const primary = def['primary_key'] !== undefined && def['primary_key'] !== null;
  return {
    name,
    type,
    notNull: nullable === 'not null' || primary,
    hasDefault: def['default_val'] !== undefined && def['default_val'] !== null || def['generated'] !== undefined && def['generated'] !== null,
    autoIncrement: def['auto_increment'] !== undefined && def['auto_increment'] !== null,
    unique: def['unique'] !== undefined && def['unique'] !== null || def['unique_key'] !== undefined && def['unique_key'] !== null,
    primary,
    check: def['check'] !== undefined && def['check'] !== null,
  };
}

function astAlterOp(e: J): AlterOp | 'online-option' | undefined {
  const resource = str(e['resource']);
  const action = str(e['action']);
  if (resource === 'algorithm' || resource === 'lock') return 'online-option';
  if (resource === 'column') {
    if (action === 'add' || action === 'modify') {
      const column = astColumn(e);
      if (column === undefined) return undefined;
      return action === 'add' ? { op: 'add-column', column } : { op: 'change-column', from: column.name, column };
    }
    if (action === 'change') {
      const from = columnName(e['old_column']);
      const column = astColumn(e);
      return from === undefined || column === undefined ? undefined : { op: 'change-column', from, column };
    }
    if (action === 'drop') {
      const name = columnName(e['column']);
      return name === undefined ? undefined : { op: 'drop-column', name };
    }
    if (action === 'rename') {
      const from = columnName(e['old_column']);
      const to = columnName(e['column']);
      return from === undefined || to === undefined ? undefined : { op: 'rename-column', from, to };
    }
    return undefined;
  }
  if (resource === 'table' && action === 'rename') {
    const to = str(e['table']);
    return to === undefined ? undefined : { op: 'rename-table', to };
  }
  if (resource === 'constraint' && action === 'add') {
    const kind = str(obj(e['create_definitions'])?.['constraint_type'])?.toLowerCase() ?? '';
    if (kind === 'primary key') return { op: 'add-index', unique: true, primary: true };
    if (kind.startsWith('unique')) return { op: 'add-index', unique: true, primary: false };
    if (kind === 'foreign key') return { op: 'add-foreign-key' };
    if (kind === 'check') return { op: 'add-check' };
    return undefined;
  }
  if (resource === 'index') {
    if (action === 'add') return { op: 'add-index', unique: false, primary: false };
    if (action === 'drop') return { op: 'other' };
  }
  return undefined;
}

function fromAst(ast: unknown): MyStatement | undefined {
  const a = obj(ast);
  if (a === undefined) return undefined;
  const type = str(a['type']);
  const keyword = str(a['keyword'])?.toLowerCase();
  if (type === 'alter') {
    const table = tableName(arr(a['table'])[0]);
    if (table === undefined) return undefined;
    const ops: AlterOp[] = [];
    let algorithm: string | undefined;
    let lock: string | undefined;
    for (const raw of arr(a['expr'])) {
      const e = obj(raw);
      if (e === undefined) return undefined;
      const op = astAlterOp(e);
      if (op === undefined) return undefined;
      if (op === 'online-option') {
        algorithm ??= str(e['algorithm'])?.toUpperCase();
        lock ??= str(e['lock'])?.toUpperCase();
      } else ops.push(op);
    }
    return { kind: 'alter-table', table, ops, online: (algorithm === 'INPLACE' || algorithm === 'INSTANT') && lock === 'NONE' };
  }
  if (type === 'create' && keyword === 'table') {
    const table = tableName(arr(a['table'])[0]);
    if (table === undefined) return undefined;
    const columns: MyColumn[] = [];
    for (const d of arr(a['create_definitions'])) {
      const def = obj(d);
      if (def?.['resource'] !== 'column') continue;
      const c = astColumn(def);
      if (c === undefined) return undefined;
      columns.push(c);
    }
    return { kind: 'create-table', table, columns };
  }
  if (type === 'create' && keyword === 'index') {
    const table = tableName(a['table']);
    if (table === undefined) return undefined;
    const algorithm = str(obj(a['algorithm_option'])?.['algorithm'])?.toUpperCase();
    const lock = str(obj(a['lock_option'])?.['lock'])?.toUpperCase();
    return { kind: 'create-index', table, unique: str(a['index_type'])?.toLowerCase() === 'unique', online: (algorithm === 'INPLACE' || algorithm === 'INSTANT') && lock === 'NONE' };
  }
  if (type === 'drop' && keyword === 'table') {
    const tables = arr(a['name']).map(tableName);
    return tables.some((t) => t === undefined) ? undefined : { kind: 'drop-table', tables: tables as string[] };
  }
  if (type === 'drop' && keyword === 'index') {
    const table = tableName(a['table']);
    return table === undefined ? undefined : { kind: 'drop-index', table };
  }
  if (type === 'rename') {
    const pairs: [string, string][] = [];
    for (const p of arr(a['table'])) {
      const [from, to] = arr(p).map(tableName);
      if (from === undefined || to === undefined) return undefined;
      pairs.push([from, to]);
    }
    return { kind: 'rename-table', pairs };
  }
  if (type === 'set') return undefined; // the token reader handles every SET form alike
  if (type === 'create' || type === 'drop' || type === 'alter') return undefined;
  return { kind: 'other' };
}


/**
 * PostgreSQL analysis on the real PostgreSQL parser (libpg_query compiled to WebAssembly):
 * turns a migration file into statements with rule hits. It decides *what* each statement
 * does; phase, severity and suppression are the linter's business, not this module's.
 * Never executes SQL.
 */
import { parse, scan } from 'libpg-query';
import type {
  AlterTableCmd,
  ColumnDef,
  Constraint,
  DropStmt,
  IndexStmt,
  Node,
  RangeVar,
  RenameStmt,
  TypeName,
  ViewStmt,
} from 'libpg-query';
import { formatType, type ColumnType, type SchemaState } from './schema.ts';
import { ident, SqlParseFailure, type AnalysedStatement, type Analysis, type Hit, type SqlComment } from './source.ts';

export interface PostgresContext {
  schema: SchemaState;
  /** The migration runner wraps the whole file in one transaction. */
  transactionWrapped: boolean;
}

/**
 * Functions whose result differs per row, so a column default calling them makes PostgreSQL
 * rewrite the table. now()/current_timestamp are STABLE: evaluated once, no rewrite (PG 11+).
 */
const VOLATILE_FUNCTIONS = new Set([
  'random',
  'random_normal',
  'gen_random_uuid',
  'uuidv4',
  'uuidv7',
  'uuid_generate_v1',
  'uuid_generate_v1mc',
  'uuid_generate_v4',
  'clock_timestamp',
  'timeofday',
  'nextval',
  'txid_current',
  'pg_current_xact_id',
]);

const SERIAL_TYPES = new Set(['serial', 'serial2', 'serial4', 'serial8', 'smallserial', 'bigserial']);

/** Types whose length/precision can grow without a rewrite; the target of a likely widening. */
const WIDENABLE_TYPES = new Set(['varchar', 'text', 'numeric', 'varbit', 'timestamp', 'timestamptz', 'time', 'timetz', 'interval']);

export async function analysePostgres(sql: string, ctx: PostgresContext): Promise<Analysis> {
  let parsed;
  try {
    parsed = await parse(sql);
  } catch (err) {
    const details = (err as { sqlDetails?: { cursorPosition?: number } }).sqlDetails;
    // libpg-query reports cursorPosition as a 0-based string offset (checked against multibyte input).
    throw new SqlParseFailure(err instanceof Error ? err.message : String(err), details?.cursorPosition ?? 0);
  }
  const toChar = byteToCharOffsets(sql);
  const tokens = (await scan(sql)).tokens.map((t) => ({ start: toChar(t.start), end: toChar(t.end), text: t.text, comment: t.tokenName === 'SQL_COMMENT' || t.tokenName === 'C_COMMENT' }));
  const comments: SqlComment[] = tokens.filter((t) => t.comment).map((t) => ({ start: t.start, end: t.end, text: sql.slice(t.start, t.end) }));
  const code = tokens.filter((t) => !t.comment && t.text !== ';');

  const file = new FileState(ctx);
  const statements: AnalysedStatement[] = [];
  for (const raw of parsed.stmts ?? []) {
    const from = toChar(raw.stmt_location ?? 0);
    const to = raw.stmt_len === undefined ? sql.length : toChar((raw.stmt_location ?? 0) + raw.stmt_len);
    const inside = code.filter((t) => t.start >= from && t.end <= to);
    if (inside.length === 0 || raw.stmt === undefined) continue;
    const start = inside[0].start;
    const end = inside[inside.length - 1].end;
    const text = sql.slice(start, end);
    statements.push({ start, end, text, ...file.analyse(raw.stmt) });
  }
  return { statements, comments };
}

/** Maps the parser's UTF-8 byte offsets to string offsets. */
function byteToCharOffsets(sql: string): (byteOffset: number) => number {
  if (Buffer.byteLength(sql) === sql.length) return (b) => b;
  const map: number[] = [];
  let bytes = 0;
  for (let i = 0; i < sql.length; i++) {
    const cp = sql.codePointAt(i) ?? 0;
    const width = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (let k = 0; k < width; k++) map[bytes + k] = i;
    bytes += width;
    if (cp >= 0x10000) i++;
  }
  map[bytes] = sql.length;
  return (b) => map[b] ?? sql.length;
}

type StatementResult = Omit<AnalysedStatement, 'start' | 'end' | 'text'>;

/** What one file has done so far: tables it created, columns it added, transaction state. */
class FileState {
  readonly #ctx: PostgresContext;
  readonly #createdTables = new Set<string>();
  readonly #addedColumns = new Set<string>();
  /** NOT VALID CHECK constraints of the form (col IS NOT NULL): name → table.column. */
  readonly #pendingNotNullChecks = new Map<string, string>();
  /** table.column with a valid CHECK (col IS NOT NULL): SET NOT NULL then needs no scan. */
  readonly #validNotNullChecks = new Set<string>();
  #inTransaction: boolean;

  constructor(ctx: PostgresContext) {
    this.#ctx = ctx;
    this.#inTransaction = ctx.transactionWrapped;
  }

  analyse(stmt: Node): StatementResult {
    const result: StatementResult = { hits: [], locking: false };
    const hit = (h: Hit): void => {
      result.hits.push(h);
    };
    if ('TransactionStmt' in stmt) {
      const kind = stmt.TransactionStmt.kind;
      if (kind === 'TRANS_STMT_BEGIN' || kind === 'TRANS_STMT_START') this.#inTransaction = true;
      else if (kind === 'TRANS_STMT_COMMIT' || kind === 'TRANS_STMT_ROLLBACK' || kind === 'TRANS_STMT_PREPARE') this.#inTransaction = this.#ctx.transactionWrapped;
    } else if ('VariableSetStmt' in stmt) {
      const v = stmt.VariableSetStmt;
      if (v.name === 'lock_timeout') result.lockTimeout = v.kind === 'VAR_SET_VALUE' && !isZeroSetting(v.args?.[0]) ? 'set' : 'cleared';
    } else if ('SelectStmt' in stmt) {
      result.lockTimeout = setConfigLockTimeout(stmt);
    } else if ('CreateStmt' in stmt) {
      this.#createTable(stmt.CreateStmt.relation, stmt.CreateStmt.tableElts ?? []);
    } else if ('AlterTableStmt' in stmt) {
      const a = stmt.AlterTableStmt;
      if (a.objtype === 'OBJECT_TABLE' && a.relation !== undefined) {
        const table = a.relation;
        if (!this.#isNew(table)) result.locking = true;
        for (const c of a.cmds ?? []) if ('AlterTableCmd' in c) this.#alterTableCmd(table, c.AlterTableCmd, hit);
      }
    } else if ('RenameStmt' in stmt) {
      this.#rename(stmt.RenameStmt, hit, result);
    } else if ('AlterObjectSchemaStmt' in stmt) {
      const s = stmt.AlterObjectSchemaStmt;
      if (s.objectType === 'OBJECT_TABLE' && s.relation !== undefined && !this.#isNew(s.relation)) {
        result.locking = true;
        hit({ rule: 'rename-table', message: `moves table ${rel(s.relation)} to schema ${s.newschema ?? '?'}` });
      }
    } else if ('DropStmt' in stmt) {
      this.#drop(stmt.DropStmt, hit, result);
    } else if ('IndexStmt' in stmt) {
      this.#createIndex(stmt.IndexStmt, hit, result);
    } else if ('ReindexStmt' in stmt) {
      const concurrent = (stmt.ReindexStmt.params ?? []).some((p) => 'DefElem' in p && p.DefElem.defname === 'concurrently');
      if (concurrent) this.#concurrentlyInTransaction('REINDEX CONCURRENTLY', hit);
      else {
        result.locking = true;
        hit({ rule: 'index-not-concurrent', message: 'REINDEX without CONCURRENTLY' });
      }
    } else if ('CreateTrigStmt' in stmt) {
      const t = stmt.CreateTrigStmt;
      if (t.relation !== undefined && !this.#isNew(t.relation)) {
        result.locking = true;
        hit({ rule: 'create-trigger', message: `creates trigger ${t.trigname ?? ''} on ${rel(t.relation)}, which runs on every write of the old version too` });
      }
    } else if ('RuleStmt' in stmt) {
      const r = stmt.RuleStmt;
      if (r.relation !== undefined && !this.#isNew(r.relation)) {
        result.locking = true;
        hit({ rule: 'create-rule', message: `creates rule ${r.rulename ?? ''} on ${rel(r.relation)}${r.instead === true ? ' (INSTEAD)' : ''}, which rewrites the old version's queries` });
      }
    } else if ('ViewStmt' in stmt) {
      this.#view(stmt.ViewStmt, hit);
    } else if ('AlterEnumStmt' in stmt) {
      const e = stmt.AlterEnumStmt;
      if (e.oldVal !== undefined) {
        result.locking = true;
        hit({ rule: 'enum-value-change', message: `renames enum value '${e.oldVal}' of type ${names(e.typeName)} to '${e.newVal ?? ''}'` });
      }
    }
    return result;
  }

  #isNew(table: RangeVar): boolean {
    return this.#createdTables.has(ident(table.relname ?? ''));
  }

  #createTable(relation: RangeVar | undefined, elements: Node[]): void {
    if (relation === undefined) return;
    const name = relation.relname ?? '';
    this.#createdTables.add(ident(name));
    const columns: [string, { type?: ColumnType; notNull: boolean }][] = [];
    for (const e of elements) {
      if (!('ColumnDef' in e)) continue;
      const c = e.ColumnDef;
      columns.push([c.colname ?? '', { type: columnType(c.typeName), notNull: constraintsOf(c).some((k) => k.contype === 'CONSTR_NOTNULL' || k.contype === 'CONSTR_PRIMARY') }]);
    }
    this.#ctx.schema.createTable(name, columns);
  }

  #alterTableCmd(table: RangeVar, cmd: AlterTableCmd, hit: (h: Hit) => void): void {
    const tname = table.relname ?? '';
    const isNew = this.#isNew(table);
    const column = cmd.name ?? '';
    const colKey = `${ident(tname)}.${ident(column)}`;
    switch (cmd.subtype) {
      case 'AT_AddColumn': {
        if (cmd.def === undefined || !('ColumnDef' in cmd.def)) return;
        const def = cmd.def.ColumnDef;
        const type = columnType(def.typeName);
        const cons = constraintsOf(def);
        const name = def.colname ?? '';
        this.#ctx.schema.setColumn(tname, name, { type, notNull: cons.some((k) => k.contype === 'CONSTR_NOTNULL') });
        if (isNew) return;
        this.#addedColumns.add(`${ident(tname)}.${ident(name)}`);
        this.#addColumn(tname, name, type, cons, hit);
        return;
      }
      case 'AT_DropColumn':
        this.#ctx.schema.dropColumn(tname, column);
        if (!isNew) hit({ rule: 'drop-column', message: `drops column ${rel(table)}.${column}` });
        return;
      case 'AT_AlterColumnType': {
        if (cmd.def === undefined || !('ColumnDef' in cmd.def)) return;
        const def = cmd.def.ColumnDef;
        const to = columnType(def.typeName);
        const known = this.#ctx.schema.column(tname, column);
        if (known !== undefined && to !== undefined) this.#ctx.schema.setColumn(tname, column, { ...known, type: to });
        if (isNew || to === undefined) return;
        this.#typeChange(`${rel(table)}.${column}`, known?.type, to, def.raw_default !== undefined, hit);
        return;
      }
      case 'AT_SetNotNull':
        if (isNew || this.#validNotNullChecks.has(colKey)) return;
        hit({ rule: 'set-not-null', message: `sets NOT NULL on ${rel(table)}.${column}` });
        return;
      case 'AT_ColumnDefault':
        if (cmd.def === undefined && !isNew) hit({ rule: 'drop-default', message: `drops the default of ${rel(table)}.${column}` });
        else if (cmd.def !== undefined && 'A_Const' in cmd.def && cmd.def.A_Const.isnull === true && !isNew) hit({ rule: 'drop-default', message: `sets the default of ${rel(table)}.${column} to NULL, which drops it` });
        return;
      case 'AT_AddConstraint':
        if (cmd.def !== undefined && 'Constraint' in cmd.def && !isNew) this.#addConstraint(table, cmd.def.Constraint, hit);
        return;
      case 'AT_ValidateConstraint': {
        const target = this.#pendingNotNullChecks.get(ident(column));
        if (target !== undefined) this.#validNotNullChecks.add(target);
        return;
      }
      default:
        return;
    }
  }

  #addColumn(table: string, column: string, type: ColumnType | undefined, cons: Constraint[], hit: (h: Hit) => void): void {
    const where = `${table}.${column}`;
    const def = cons.find((k) => k.contype === 'CONSTR_DEFAULT');
    const identity = cons.some((k) => k.contype === 'CONSTR_IDENTITY');
    const stored = cons.some((k) => k.contype === 'CONSTR_GENERATED');
    const serial = type !== undefined && SERIAL_TYPES.has(type.name);
    const volatile = def?.raw_expr !== undefined ? volatileCall(def.raw_expr) : undefined;
    if (volatile !== undefined) hit({ rule: 'volatile-default', message: `adds ${where} with the volatile default ${volatile}(), which rewrites the table` });
    else if (serial) hit({ rule: 'volatile-default', message: `adds ${where} as ${type.name}, whose nextval() default rewrites the table` });
    else if (identity) hit({ rule: 'volatile-default', message: `adds identity column ${where}, which fills every existing row and rewrites the table` });
    else if (stored) hit({ rule: 'volatile-default', message: `adds stored generated column ${where}, which rewrites the table` });
    const notNull = cons.some((k) => k.contype === 'CONSTR_NOTNULL' || k.contype === 'CONSTR_PRIMARY');
    if (notNull && def === undefined && !identity && !stored && !serial) hit({ rule: 'add-not-null-column', message: `adds NOT NULL column ${where} without a default` });
    for (const k of cons) {
      if (k.contype === 'CONSTR_UNIQUE' || k.contype === 'CONSTR_PRIMARY') hit({ rule: 'add-unique-constraint', message: `adds ${where} with an inline ${k.contype === 'CONSTR_PRIMARY' ? 'PRIMARY KEY' : 'UNIQUE'} constraint, which builds an index under lock` });
      if ((k.contype === 'CONSTR_FOREIGN' || k.contype === 'CONSTR_CHECK') && k.skip_validation !== true) {
        hit({ rule: 'add-constraint-validates', message: `adds ${where} with an inline ${k.contype === 'CONSTR_FOREIGN' ? 'REFERENCES' : 'CHECK'} constraint that is validated at once` });
      }
      if (k.contype === 'CONSTR_CHECK' && k.raw_expr !== undefined && notNullTestedColumns(k.raw_expr).has(ident(column))) {
        hit({ rule: 'constraint-rejects-old-writes', message: `adds ${where} with CHECK (${column} IS NOT NULL), but the old version never writes it` });
      }
    }
  }

  #addConstraint(table: RangeVar, k: Constraint, hit: (h: Hit) => void): void {
    const t = rel(table);
    const name = k.conname !== undefined ? `${k.conname} ` : '';
    switch (k.contype) {
      case 'CONSTR_UNIQUE':
      case 'CONSTR_PRIMARY':
      case 'CONSTR_EXCLUSION':
        if (k.indexname === undefined) {
          const kind = k.contype === 'CONSTR_UNIQUE' ? 'UNIQUE' : k.contype === 'CONSTR_PRIMARY' ? 'PRIMARY KEY' : 'EXCLUDE';
          hit({ rule: 'add-unique-constraint', message: `adds ${kind} constraint ${name}on ${t}, which builds its index under lock` });
        }
        return;
      case 'CONSTR_FOREIGN':
      case 'CONSTR_CHECK': {
        const kind = k.contype === 'CONSTR_FOREIGN' ? 'FOREIGN KEY' : 'CHECK';
        if (k.skip_validation !== true) hit({ rule: 'add-constraint-validates', message: `adds ${kind} constraint ${name}on ${t} without NOT VALID` });
        if (k.contype === 'CONSTR_CHECK' && k.raw_expr !== undefined) {
          let named = false;
          for (const col of notNullTestedColumns(k.raw_expr)) {
            const key = `${ident(table.relname ?? '')}.${col}`;
            if (this.#addedColumns.has(key)) {
              named = true;
              hit({ rule: 'constraint-rejects-old-writes', message: `CHECK constraint ${name}requires ${t}.${col}, which the old version does not write` });
            }
            if (k.skip_validation === true) this.#pendingNotNullChecks.set(ident(k.conname ?? ''), key);
            else this.#validNotNullChecks.add(key);
          }
          const existing = [...referencedColumns(k.raw_expr)].filter((c) => !this.#addedColumns.has(`${ident(table.relname ?? '')}.${c}`));
          if (!named && existing.length > 0) {
            hit({ rule: 'constraint-rejects-old-writes', message: `adds CHECK constraint ${name}on ${t}${k.skip_validation === true ? ' (NOT VALID skips existing rows, not new writes)' : ''}: every write of the old version to ${existing.join(', ')} must satisfy it` });
          }
        }
        return;
      }
      default:
        return;
    }
  }

  #typeChange(where: string, from: ColumnType | undefined, to: ColumnType, using: boolean, hit: (h: Hit) => void): void {
    if (from !== undefined) {
      if (!using && isBinaryCoercible(from, to)) return;
      hit({ rule: 'change-column-type', message: `changes the type of ${where} from ${formatType(from)} to ${formatType(to)}${using ? ' with USING' : ''}` });
      return;
    }
    const msg = `changes the type of ${where} to ${formatType(to)}${using ? ' with USING' : ''}`;
    if (!using && to.array !== true && WIDENABLE_TYPES.has(to.name)) {
      hit({ rule: 'change-column-type', message: msg, uncertain: 'the current type is neither in the linted files nor shown by the database, so this fails closed; if it only widens the column (varchar(n)→varchar(m>n) or text, more numeric precision), suppress with that reason' });
    } else {
      hit({ rule: 'change-column-type', message: msg });
    }
  }

  #rename(r: RenameStmt, hit: (h: Hit) => void, result: StatementResult): void {
    const schema = this.#ctx.schema;
    switch (r.renameType) {
      case 'OBJECT_COLUMN':
        if (r.relation === undefined) return;
        schema.renameColumn(r.relation.relname ?? '', r.subname ?? '', r.newname ?? '');
        if (this.#isNew(r.relation)) return;
        result.locking = true;
        hit({ rule: 'rename-column', message: `renames column ${rel(r.relation)}.${r.subname ?? ''} to ${r.newname ?? ''}` });
        return;
      case 'OBJECT_TABLE':
      case 'OBJECT_VIEW':
      case 'OBJECT_MATVIEW':
      case 'OBJECT_FOREIGN_TABLE':
        if (r.relation === undefined) return;
        schema.renameTable(r.relation.relname ?? '', r.newname ?? '');
        if (this.#isNew(r.relation)) {
          this.#createdTables.add(ident(r.newname ?? ''));
          return;
        }
        result.locking = true;
        hit({ rule: 'rename-table', message: `renames ${r.renameType.slice(7).toLowerCase().replace('_', ' ')} ${rel(r.relation)} to ${r.newname ?? ''}` });
        return;
      case 'OBJECT_TYPE':
      case 'OBJECT_DOMAIN':
        hit({ rule: 'rename-type', message: `renames type ${r.object !== undefined ? nameOfObject(r.object) : '?'} to ${r.newname ?? ''}` });
        return;
      default:
        return;
    }
  }

  #drop(d: DropStmt, hit: (h: Hit) => void, result: StatementResult): void {
    const objects = (d.objects ?? []).map(nameOfObject);
    switch (d.removeType) {
      case 'OBJECT_TABLE':
        for (const name of objects) {
          const short = name.split('.').pop() ?? name;
          this.#ctx.schema.dropTable(short);
          if (this.#createdTables.has(ident(short))) continue;
          result.locking = true;
          hit({ rule: 'drop-table', message: `drops table ${name}` });
        }
        return;
      case 'OBJECT_INDEX':
        if (d.concurrent === true) this.#concurrentlyInTransaction('DROP INDEX CONCURRENTLY', hit);
        else {
          result.locking = true;
          hit({ rule: 'index-not-concurrent', message: `drops index ${objects.join(', ')} without CONCURRENTLY` });
        }
        return;
      case 'OBJECT_TYPE':
      case 'OBJECT_DOMAIN':
        hit({ rule: 'drop-type', message: `drops type ${objects.join(', ')}` });
        return;
      case 'OBJECT_VIEW':
      case 'OBJECT_MATVIEW':
      case 'OBJECT_SEQUENCE':
      case 'OBJECT_FUNCTION':
      case 'OBJECT_PROCEDURE':
      case 'OBJECT_SCHEMA':
        hit({ rule: 'drop-object', message: `drops ${d.removeType.slice(7).toLowerCase()} ${objects.join(', ')}` });
        return;
      default:
        return;
    }
  }

  #createIndex(i: IndexStmt, hit: (h: Hit) => void, result: StatementResult): void {
    if (i.relation === undefined || this.#isNew(i.relation)) return;
    const what = `${i.unique === true ? 'unique ' : ''}index ${i.idxname ?? ''} on ${rel(i.relation)}`.replace('  ', ' ');
    if (i.unique === true) {
      const cols = (i.indexParams ?? []).flatMap((p) => ('IndexElem' in p && p.IndexElem.name !== undefined ? [p.IndexElem.name] : []));
      const existing = cols.filter((c) => !this.#addedColumns.has(`${ident(i.relation?.relname ?? '')}.${ident(c)}`));
      if (existing.length > 0 || cols.length === 0) {
        hit({ rule: 'constraint-rejects-old-writes', message: `creates ${what}: a duplicate the old version writes to ${existing.join(', ') || 'the indexed expression'} is rejected (and the build fails if duplicates exist)` });
      }
    }
    if (i.concurrent === true) {
      this.#concurrentlyInTransaction('CREATE INDEX CONCURRENTLY', hit);
      return;
    }
    result.locking = true;
    hit({ rule: 'index-not-concurrent', message: `creates ${what} without CONCURRENTLY` });
  }

  /** CREATE [OR REPLACE] VIEW: replacing a view the old version reads may change its columns. */
  #view(v: ViewStmt, hit: (h: Hit) => void): void {
    if (v.view === undefined) return;
    const name = v.view.relname ?? '';
    const aliases = strings(v.aliases);
    const cols = aliases.length > 0 ? aliases : outputColumns(v.query);
    const before = this.#ctx.schema.view(name);
    this.#ctx.schema.setView(name, cols);
    if (v.replace !== true || this.#createdTables.has(ident(name))) {
      this.#createdTables.add(ident(name));
      return;
    }
    const where = rel(v.view);
    if (before === undefined || before === null) {
      hit({ rule: 'replace-view', message: `replaces view ${where}, whose current columns are not in the linted files, so a change to them cannot be ruled out` });
    } else if (cols === null) {
      hit({ rule: 'replace-view', message: `replaces view ${where} (${before.join(', ')}) with columns the linter cannot list (SELECT *)` });
    } else if (!before.every((c, k) => cols[k] === c)) {
      hit({ rule: 'replace-view', message: `replaces view ${where}: its columns change from (${before.join(', ')}) to (${cols.join(', ')})` });
    }
  }

  #concurrentlyInTransaction(what: string, hit: (h: Hit) => void): void {
    if (!this.#inTransaction) return;
    const where = this.#ctx.transactionWrapped ? 'the file is marked as wrapped in a transaction' : 'it follows BEGIN without COMMIT';
    hit({ rule: 'concurrently-in-transaction', message: `${what} inside a transaction block (${where})` });
  }
}

function constraintsOf(def: ColumnDef): Constraint[] {
  return (def.constraints ?? []).flatMap((c) => ('Constraint' in c ? [c.Constraint] : []));
}

function rel(r: RangeVar): string {
  return r.schemaname !== undefined ? `${r.schemaname}.${r.relname ?? ''}` : (r.relname ?? '');
}

function strings(nodes: Node[] | undefined): string[] {
  return (nodes ?? []).flatMap((n) => ('String' in n ? [n.String.sval ?? ''] : []));
}

function names(nodes: Node[] | undefined): string {
  return strings(nodes).join('.');
}

function nameOfObject(n: Node): string {
  if ('List' in n) return names(n.List.items);
  if ('TypeName' in n) return names(n.TypeName.names);
  if ('String' in n) return n.String.sval ?? '';
  if ('ObjectWithArgs' in n) return names(n.ObjectWithArgs.objname);
  return '?';
}

export function columnType(t: TypeName | undefined): ColumnType | undefined {
  if (t === undefined) return undefined;
  const parts = strings(t.names).filter((p) => p !== 'pg_catalog');
  const name = parts[parts.length - 1];
  if (name === undefined) return undefined;
  const mods = (t.typmods ?? []).flatMap((m) => ('A_Const' in m && m.A_Const.ival !== undefined ? [m.A_Const.ival.ival ?? 0] : []));
  const type: ColumnType = { name: ident(name), mods };
  if ((t.arrayBounds ?? []).length > 0) type.array = true;
  return type;
}

/** True when changing `from` to `to` needs no rewrite and accepts every old value. */
export function isBinaryCoercible(from: ColumnType, to: ColumnType): boolean {
  if ((from.array === true) !== (to.array === true)) return false;
  const unlimited = to.mods.length === 0;
  if (from.name === to.name) {
    if (from.mods.join(',') === to.mods.join(',')) return true;
    switch (from.name) {
      case 'varchar':
      case 'varbit':
      case 'timestamp':
      case 'timestamptz':
      case 'time':
      case 'timetz':
      case 'interval':
        return unlimited || (from.mods.length > 0 && to.mods[0] >= from.mods[0]);
      case 'numeric':
        return unlimited || (from.mods.length > 0 && to.mods[0] >= from.mods[0] && (to.mods[1] ?? 0) === (from.mods[1] ?? 0));
      default:
        return false;
    }
  }
  if (from.name === 'varchar' && to.name === 'text') return true;
  if (from.name === 'text' && to.name === 'varchar' && unlimited) return true;
  if (from.name === 'cidr' && to.name === 'inet') return true;
  return false;
}

/** Depth-first walk over a parse tree, calling `visit` on every object node. */
function walk(node: unknown, visit: (obj: Record<string, unknown>) => void): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, visit);
  } else if (node !== null && typeof node === 'object') {
    visit(node as Record<string, unknown>);
    for (const v of Object.values(node)) walk(v, visit);
  }
}

/** The first volatile function called in an expression, if any. */
function volatileCall(expr: Node): string | undefined {
  let found: string | undefined;
  walk(expr, (o) => {
    const call = o['FuncCall'] as { funcname?: Node[] } | undefined;
    if (found !== undefined || call === undefined) return;
    const fname = strings(call.funcname).pop();
    if (fname !== undefined && VOLATILE_FUNCTIONS.has(ident(fname))) found = fname;
  });
  return found;
}

/** Every column an expression refers to (last name part). */
function referencedColumns(expr: Node): Set<string> {
  const cols = new Set<string>();
  walk(expr, (o) => {
    const ref = o['ColumnRef'] as { fields?: Node[] } | undefined;
    const col = ref !== undefined ? strings(ref.fields).pop() : undefined;
    if (col !== undefined) cols.add(ident(col));
  });
  return cols;
}

/** A view query's output column names in order, or null when one cannot be named (`*`, a set operation). */
function outputColumns(query: Node | undefined): string[] | null {
  if (query === undefined || !('SelectStmt' in query)) return null;
  const sel = query.SelectStmt;
  if (sel.op !== undefined && sel.op !== 'SETOP_NONE') return outputColumns(sel.larg !== undefined ? { SelectStmt: sel.larg } : undefined);
  const out: string[] = [];
  for (const t of sel.targetList ?? []) {
    if (!('ResTarget' in t)) return null;
    const r = t.ResTarget;
    if (r.name !== undefined) { out.push(ident(r.name)); continue; }
    const v = r.val;
    if (v !== undefined && 'ColumnRef' in v) {
      const fields = v.ColumnRef.fields ?? [];
      const last = fields[fields.length - 1];
      if (last === undefined || 'A_Star' in last) return null;
      out.push(ident(strings([last])[0] ?? ''));
      continue;
    }
    if (v !== undefined && 'FuncCall' in v) { out.push(ident(strings(v.FuncCall.funcname).pop() ?? '?column?')); continue; }
    out.push('?column?');
  }
  return out;
}

/** Columns the expression tests with IS NOT NULL. */
function notNullTestedColumns(expr: Node): Set<string> {
  const cols = new Set<string>();
  walk(expr, (o) => {
    const test = o['NullTest'] as { arg?: Node; nulltesttype?: string } | undefined;
    if (test?.nulltesttype !== 'IS_NOT_NULL' || test.arg === undefined || !('ColumnRef' in test.arg)) return;
    const col = strings(test.arg.ColumnRef.fields).pop();
    if (col !== undefined) cols.add(ident(col));
  });
  return cols;
}

function isZeroSetting(arg: Node | undefined): boolean {
  if (arg === undefined || !('A_Const' in arg)) return false;
  const c = arg.A_Const;
  if (c.ival !== undefined) return (c.ival.ival ?? 0) === 0;
  if (c.sval !== undefined) return /^\s*0+(\.0*)?\s*(us|ms|s|min|h|d)?\s*$/i.test(c.sval.sval ?? '');
  return false;
}

/** SELECT set_config('lock_timeout', '5s', …) sets the timeout too. */
function setConfigLockTimeout(stmt: Node): 'set' | 'cleared' | undefined {
  let state: 'set' | 'cleared' | undefined;
  walk(stmt, (o) => {
    const call = o['FuncCall'] as { funcname?: Node[]; args?: Node[] } | undefined;
    if (call === undefined || strings(call.funcname).pop() !== 'set_config') return;
    const [nameArg, valueArg] = call.args ?? [];
    if (nameArg === undefined || !('A_Const' in nameArg) || nameArg.A_Const.sval?.sval !== 'lock_timeout') return;
    state = isZeroSetting(valueArg) ? 'cleared' : 'set';
  });
  return state;
}

/**
 * What the linter knows about the schema so far: tables and column types seen in earlier
 * statements and earlier files of the same run (files are linted in the order given).
 * It only ever grows from the migrations themselves; it never reads a live database, so a
 * column created outside the linted files has an unknown type.
 */
import { ident } from './source.ts';

export interface ColumnType {
  /** Canonical lower-case type name without schema (`varchar`, `numeric`, `int4`, `enum`). */
  name: string;
  /** Type modifiers: varchar(20) → [20], numeric(10,2) → [10, 2]. */
  mods: number[];
  array?: boolean;
  /** MySQL ENUM/SET values, in order. */
  values?: string[];
}

export interface ColumnInfo {
  type?: ColumnType;
  notNull: boolean;
}

export class SchemaState {
  readonly #tables = new Map<string, Map<string, ColumnInfo>>();
  /** View → its output column names in order (null: not derivable, e.g. `SELECT *`). */
  readonly #views = new Map<string, string[] | null>();

  /** Undefined when the view is not known (not created in the linted files). */
  view(name: string): string[] | null | undefined {
    return this.#views.get(ident(name));
  }

  setView(name: string, columns: string[] | null): void {
    this.#views.set(ident(name), columns);
  }

  hasTable(table: string): boolean {
    return this.#tables.has(ident(table));
  }

  column(table: string, column: string): ColumnInfo | undefined {
    return this.#tables.get(ident(table))?.get(ident(column));
  }

  createTable(table: string, columns: Iterable<[string, ColumnInfo]> = []): void {
    const cols = new Map<string, ColumnInfo>();
    for (const [name, info] of columns) cols.set(ident(name), info);
    this.#tables.set(ident(table), cols);
  }

  setColumn(table: string, column: string, info: ColumnInfo): void {
    const key = ident(table);
    let cols = this.#tables.get(key);
    if (cols === undefined) {
      cols = new Map();
      this.#tables.set(key, cols);
    }
    cols.set(ident(column), info);
  }

  dropColumn(table: string, column: string): void {
    this.#tables.get(ident(table))?.delete(ident(column));
  }

  renameColumn(table: string, from: string, to: string): void {
    const cols = this.#tables.get(ident(table));
    const info = cols?.get(ident(from));
    if (cols === undefined || info === undefined) return;
    cols.delete(ident(from));
    cols.set(ident(to), info);
  }

  dropTable(table: string): void {
    this.#tables.delete(ident(table));
  }

  renameTable(from: string, to: string): void {
    const cols = this.#tables.get(ident(from));
    this.#tables.delete(ident(from));
    if (cols !== undefined) this.#tables.set(ident(to), cols);
  }
}

export function formatType(t: ColumnType): string {
  const base = t.values !== undefined ? `${t.name}(${t.values.map((v) => `'${v}'`).join(',')})` : t.mods.length > 0 ? `${t.name}(${t.mods.join(',')})` : t.name;
  return t.array === true ? `${base}[]` : base;
}

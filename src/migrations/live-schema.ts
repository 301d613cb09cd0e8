/**
 * The column types the database has now, as the linter's SchemaState: in the pipeline, a type
 * change on a column created before Cutover (not in any linted file) is judged against the real
 * type, so a widening passes and anything else fails closed. Read-only: one information_schema
 * query on the connection it is given.
 */
import type { DbConnection } from './db.ts';
import { SchemaState, type ColumnType } from './schema.ts';

interface PgColumn { t: string; c: string; udt: string; len: number | null; prec: number | null; scale: number | null; dt: number | null; data_type: string; nullable: string }
interface MyColumnRow { t: string; c: string; ct: string; nullable: string }

export async function schemaFromDatabase(db: DbConnection): Promise<SchemaState> {
  const schema = new SchemaState();
  if (db.engine === 'postgres') {
    const rows = await db.query<PgColumn>(`SELECT table_name AS t, column_name AS c, udt_name AS udt, character_maximum_length AS len,
      numeric_precision AS prec, numeric_scale AS scale, datetime_precision AS dt, data_type, is_nullable AS nullable
      FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`);
    for (const r of rows) schema.setColumn(r.t, r.c, { type: pgType(r), notNull: r.nullable === 'NO' });
  } else {
    const rows = await db.query<MyColumnRow>(`SELECT TABLE_NAME AS t, COLUMN_NAME AS c, COLUMN_TYPE AS ct, IS_NULLABLE AS nullable
      FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION`);
    for (const r of rows) schema.setColumn(r.t, r.c, { type: mysqlType(String(r.ct)), notNull: r.nullable === 'NO' });
  }
  return schema;
}

function pgType(r: PgColumn): ColumnType {
  const array = r.udt.startsWith('_');
  const name = array ? r.udt.slice(1) : r.udt;
  let mods: number[] = [];
  if (r.len !== null && r.len !== undefined) mods = [Number(r.len)];
  else if (name === 'numeric' && r.prec !== null && r.prec !== undefined) mods = [Number(r.prec), Number(r.scale ?? 0)];
  else if (['timestamp', 'timestamptz', 'time', 'timetz', 'interval'].includes(name) && r.dt !== null && r.dt !== undefined && Number(r.dt) !== 6) mods = [Number(r.dt)];
  return array ? { name, mods, array } : { name, mods };
}

/** `varchar(50)`, `decimal(10,2)`, `enum('a','b')`, `int(11) unsigned` → ColumnType. */
export function mysqlType(ct: string): ColumnType {
  const m = /^\s*(\w+)\s*(?:\((.*)\))?/s.exec(ct);
  const name = (m?.[1] ?? ct).toLowerCase();
  const args = m?.[2];
  if ((name === 'enum' || name === 'set') && args !== undefined) {
    const values = [...args.matchAll(/'((?:[^']|'')*)'/g)].map((x) => x[1].replace(/''/g, "'"));
    return { name, mods: [], values };
  }
  const mods = args !== undefined ? args.split(',').map((x) => Number(x.trim())).filter((n) => Number.isFinite(n)) : [];
  return { name, mods };
}

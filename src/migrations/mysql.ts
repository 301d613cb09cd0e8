import type { SchemaState } from './schema.ts';
import type { Analysis } from './source.ts';
export function analyseMysql(sql: string, ctx: { schema: SchemaState }): Analysis { void sql; void ctx; return { statements: [], comments: [] }; }

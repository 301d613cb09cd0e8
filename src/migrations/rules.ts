/**
 * The migration linter's rule table: the one source for rule ids, severities, and the
 * "why" and "safe alternative" texts, shared by the linter, its output and the docs.
 * It holds data only; detection lives in `postgres.ts` and `mysql.ts`.
 *
 * Rule kinds:
 * - `breaking`: the old version (still live during an expand) would fail against the new
 *   schema. Error in an expand file; expected (info) in a contract file.
 * - `locking`: the statement blocks reads or writes on a busy table, or can. Same severity
 *   in both phases, because traffic is live in both.
 * - `directive`: a problem with a `-- cutover:` comment itself. Never suppressible.
 */

export type Engine = 'postgres' | 'mysql';
export type Phase = 'expand' | 'contract';
export type Severity = 'error' | 'warning' | 'info';
export type RuleKind = 'breaking' | 'locking' | 'directive';

export interface RuleText {
  severity?: { expand: Severity; contract: Severity };
  why?: string;
  fix?: string;
}

export interface Rule {
  id: string;
  kind: RuleKind;
  title: string;
  engines: readonly Engine[];
  severity: { expand: Severity; contract: Severity };
  why: string;
  fix: string;
  /** Engine-specific wording or severity where the engines differ. */
  byEngine?: Partial<Record<Engine, RuleText>>;
}

const BREAKING = { expand: 'error', contract: 'info' } as const;
const LOCKING_ERROR = { expand: 'error', contract: 'error' } as const;
const LOCKING_WARNING = { expand: 'warning', contract: 'warning' } as const;
const BOTH: readonly Engine[] = ['postgres', 'mysql'];

const GH_OST = 'run it with an online schema change tool (gh-ost or pt-online-schema-change)';

export const RULES = [
  {
    id: 'drop-column',
    kind: 'breaking',
    title: 'Drop column',
    engines: BOTH,
    severity: BREAKING,
    why: 'The old version still selects and inserts this column; its queries fail as soon as the column is gone.',
    fix: 'Stop using the column in the new version first (expand), and drop it in a contract migration after the old version is retired.',
  },
  {
    id: 'drop-table',
    kind: 'breaking',
    title: 'Drop table',
    engines: BOTH,
    severity: BREAKING,
    why: 'The old version still reads and writes this table; every query on it fails once it is dropped.',
    fix: 'Stop using the table in the new version, and drop it in a contract migration after the old version is retired.',
  },
  {
    id: 'drop-object',
    kind: 'breaking',
    title: 'Drop view, sequence, function or schema',
    engines: ['postgres'],
    severity: BREAKING,
    why: 'The old version may still use this object; its queries fail once it is dropped.',
    fix: 'Drop it in a contract migration after the old version is retired.',
  },
  {
    id: 'rename-column',
    kind: 'breaking',
    title: 'Rename column',
    engines: BOTH,
    severity: BREAKING,
    why: 'The old version still uses the old column name; its queries fail the moment the rename commits.',
    fix: 'Add the new column (expand), write both and backfill, switch reads to the new column, then drop the old column in a contract migration. Or keep the old name.',
  },
  {
    id: 'rename-table',
    kind: 'breaking',
    title: 'Rename or move table',
    engines: BOTH,
    severity: BREAKING,
    why: 'The old version still uses the old table name; its queries fail the moment the rename commits.',
    fix: 'Create the new table (or a view with the new name over the old table) in expand, move the code over, and drop the old name in a contract migration.',
  },
  {
    id: 'change-column-type',
    kind: 'breaking',
    title: 'Change column type',
    engines: BOTH,
    severity: BREAKING,
    why: 'The old version reads and writes the column with its old type, and the change rewrites the whole table while holding an exclusive lock (only binary-coercible widenings avoid both).',
    fix: 'Add a new column with the new type (expand), write both and backfill in batches, switch reads, then drop the old column in a contract migration. Widening varchar(n) to varchar(m>n) or text, or raising numeric precision, is safe.',
    byEngine: {
      mysql: {
        why: 'The old version reads and writes the column with its old type, and MySQL copies the whole table to change it (only widening a VARCHAR within the same length-prefix size is in place).',
        fix: `Add a new column with the new type (expand), write both and backfill, switch reads, then drop the old column in a contract migration; ${GH_OST} for big tables.`,
      },
    },
  },
  {
    id: 'add-not-null-column',
    kind: 'breaking',
    title: 'Add NOT NULL column without a default',
    engines: BOTH,
    severity: { expand: 'error', contract: 'warning' },
    why: 'The old version does not know the column, so its inserts leave it out and are rejected; on PostgreSQL the ALTER itself fails if the table has rows.',
    fix: 'Add the column nullable or with a constant DEFAULT (expand), backfill, and add NOT NULL later (CHECK … NOT VALID, VALIDATE, then SET NOT NULL).',
    byEngine: {
      mysql: {
        why: 'The old version does not know the column, so its inserts leave it out and fail in strict mode ("Field doesn\'t have a default value").',
        fix: 'Add the column nullable or with a DEFAULT (expand), backfill, and make it NOT NULL in a contract migration.',
      },
    },
  },
  {
    id: 'set-not-null',
    kind: 'breaking',
    title: 'SET NOT NULL on an existing column',
    engines: BOTH,
    severity: { expand: 'error', contract: 'warning' },
    why: 'The old version may still write NULL to this column and would be rejected; and on PostgreSQL the change scans the whole table under an ACCESS EXCLUSIVE lock.',
    fix: 'Backfill, then ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT …; then SET NOT NULL (PostgreSQL 12+ uses the valid CHECK and skips the scan), once no running version writes NULL.',
    byEngine: {
      mysql: {
        why: 'The old version may still write NULL to this column and would be rejected; MySQL also rebuilds the table to change nullability.',
        fix: `Backfill and make the column NOT NULL in a contract migration, once no running version writes NULL; ${GH_OST} for big tables.`,
      },
    },
  },
  {
    id: 'constraint-rejects-old-writes',
    kind: 'breaking',
    title: 'New constraint rejects writes the old version makes',
    engines: BOTH,
    severity: BREAKING,
    why: 'A new CHECK (NOT VALID too: it skips existing rows, not new writes) or unique index on a live table checks every write of the old version from the moment it commits; values the old version still writes (an empty string, a duplicate, a NULL in a column it does not know) are rejected, and its requests fail.',
    fix: 'Add the constraint in a contract migration, after the old version is retired and the data is backfilled. If the old version provably never writes a rejected value, suppress with that reason (the compatibility run replays recorded traffic to check).',
  },
  {
    id: 'create-trigger',
    kind: 'breaking',
    title: 'Trigger on a table the old version writes',
    engines: BOTH,
    severity: BREAKING,
    why: 'A trigger runs on every write of the old version too; if it requires values the old version does not write (a new column) or raises for them, the old version\'s writes fail.',
    fix: 'A trigger that only fills new columns from old ones (the expand-contract sync trigger) is the safe kind: suppress with that reason. Anything that can reject a write belongs in a contract migration.',
  },
  {
    id: 'create-rule',
    kind: 'breaking',
    title: 'Rewrite rule on a table the old version uses',
    engines: ['postgres'],
    severity: BREAKING,
    why: 'A rule rewrites the old version\'s queries on the table (INSTEAD rules replace them entirely), so they no longer do what that code expects.',
    fix: 'Use a view or a trigger the old version is known to tolerate, or create the rule in a contract migration.',
  },
  {
    id: 'replace-view',
    kind: 'breaking',
    title: 'Replace a view the old version reads, changing its columns',
    engines: BOTH,
    severity: BREAKING,
    why: 'The old version reads the view by its column names and positions; a replacement that drops, renames or reorders them (or whose old columns the linter cannot see) breaks its queries.',
    fix: 'Only append columns at the end (PostgreSQL allows nothing else in CREATE OR REPLACE VIEW), or create a view with a new name in expand and drop the old one in a contract migration.',
    byEngine: {
      mysql: {
        why: 'MySQL\'s CREATE OR REPLACE VIEW / ALTER VIEW can change every column of the view; the old version reads it by name and position.',
      },
    },
  },
  {
    id: 'drop-default',
    kind: 'breaking',
    title: 'Drop a column default (or SET DEFAULT NULL)',
    engines: BOTH,
    severity: BREAKING,
    why: 'The old version may leave this column out of its inserts and rely on the default; without it (SET DEFAULT NULL included) those rows get NULL, or are rejected if the column is NOT NULL.',
    fix: 'Drop the default in a contract migration, after the old version is retired.',
  },
  {
    id: 'enum-value-change',
    kind: 'breaking',
    title: 'Rename, remove or reorder enum values',
    engines: BOTH,
    severity: BREAKING,
    why: 'The old version still writes and compares the old enum values; they are rejected or read back differently.',
    fix: 'Only add enum values in expand (ALTER TYPE … ADD VALUE; in MySQL append at the end of the list); stop using a value in the new version and remove it in a contract migration.',
    byEngine: {
      mysql: {
        why: 'The old version still writes the old ENUM values, which are rejected or silently stored as \'\'; any change other than appending at the end also copies the table.',
        fix: 'Only append new values at the end of the ENUM list in expand (done in place); remove or rename values in a contract migration.',
      },
    },
  },
  {
    id: 'drop-type',
    kind: 'breaking',
    title: 'Drop or recreate a type',
    engines: ['postgres'],
    severity: BREAKING,
    why: 'Columns and the old version\'s casts use this type; dropping it (or dropping and recreating an enum to change its values) breaks them.',
    fix: 'Add values with ALTER TYPE … ADD VALUE in expand; drop the type in a contract migration after nothing uses it.',
  },
  {
    id: 'rename-type',
    kind: 'breaking',
    title: 'Rename a type',
    engines: ['postgres'],
    severity: BREAKING,
    why: 'The old version\'s casts and DDL refer to the type by its old name.',
    fix: 'Create the new type and migrate columns over in expand; drop the old one in a contract migration.',
  },
  {
    id: 'volatile-default',
    kind: 'locking',
    title: 'Add column with a volatile default',
    engines: ['postgres'],
    severity: LOCKING_ERROR,
    why: 'A volatile default (random(), gen_random_uuid(), clock_timestamp(), nextval(), serial, identity or a stored generated column) must be computed per row, so PostgreSQL rewrites the whole table under an ACCESS EXCLUSIVE lock. Constant and stable defaults (0, \'x\', now()) are stored once (PostgreSQL 11+) and are fine.',
    fix: 'Add the column without a default (or with a constant one), then SET DEFAULT for new rows, and backfill existing rows in batches.',
  },
  {
    id: 'index-not-concurrent',
    kind: 'locking',
    title: 'Create or drop an index without CONCURRENTLY',
    engines: BOTH,
    severity: LOCKING_ERROR,
    why: 'Without CONCURRENTLY, CREATE INDEX blocks all writes to the table for the whole build, and DROP INDEX / REINDEX take an ACCESS EXCLUSIVE lock.',
    fix: 'Use CREATE INDEX CONCURRENTLY / DROP INDEX CONCURRENTLY / REINDEX … CONCURRENTLY, outside a transaction.',
    byEngine: {
      mysql: {
        severity: LOCKING_WARNING,
        why: 'Without ALGORITHM=INPLACE, LOCK=NONE the server silently falls back to a locking table copy when an online build is not possible.',
        fix: `Add ALGORITHM=INPLACE, LOCK=NONE so the server refuses instead of locking, or ${GH_OST}.`,
      },
    },
  },
  {
    id: 'concurrently-in-transaction',
    kind: 'locking',
    title: 'CONCURRENTLY inside a transaction',
    engines: ['postgres'],
    severity: LOCKING_ERROR,
    why: 'CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction block: the migration fails.',
    fix: 'Put the concurrent index statement in its own migration file that is not wrapped in BEGIN … COMMIT (and tell your migration runner not to wrap it).',
  },
  {
    id: 'add-unique-constraint',
    kind: 'locking',
    title: 'Add UNIQUE or PRIMARY KEY constraint directly',
    engines: BOTH,
    severity: LOCKING_ERROR,
    why: 'Adding the constraint builds its index while blocking writes to the table; it also rejects duplicates the old version may still write.',
    fix: 'CREATE UNIQUE INDEX CONCURRENTLY … first, then ALTER TABLE … ADD CONSTRAINT … UNIQUE USING INDEX … (or PRIMARY KEY USING INDEX).',
    byEngine: {
      mysql: {
        severity: LOCKING_WARNING,
        why: 'The build rejects the whole ALTER if duplicates exist, rejects duplicates the old version may still write, and falls back to a locking copy without ALGORITHM=INPLACE, LOCK=NONE.',
        fix: `Check for duplicates first, add ALGORITHM=INPLACE, LOCK=NONE, or ${GH_OST}.`,
      },
    },
  },
  {
    id: 'add-constraint-validates',
    kind: 'locking',
    title: 'Add FOREIGN KEY or CHECK that validates existing rows',
    engines: BOTH,
    severity: LOCKING_ERROR,
    why: 'Adding a FOREIGN KEY or CHECK without NOT VALID scans every existing row while holding a lock that blocks writes (a FOREIGN KEY also locks the referenced table).',
    fix: 'ADD CONSTRAINT … NOT VALID (only new writes are checked, instantly), then ALTER TABLE … VALIDATE CONSTRAINT … in a later statement (it takes a lock that does not block writes).',
    byEngine: {
      mysql: {
        severity: LOCKING_WARNING,
        why: 'MySQL has no NOT VALID: adding a FOREIGN KEY or CHECK validates every row, and a FOREIGN KEY added with foreign_key_checks on copies the table while blocking writes.',
        fix: `Add it with ALGORITHM=INPLACE, LOCK=NONE (needs SET foreign_key_checks=0 for a FOREIGN KEY, so check the data first), or ${GH_OST}.`,
      },
    },
  },
  {
    id: 'missing-lock-timeout',
    kind: 'locking',
    title: 'Locking DDL without a lock timeout',
    engines: BOTH,
    severity: LOCKING_WARNING,
    why: 'DDL waits for its lock behind any long query, and while it waits every other query on the table queues behind it: a short migration becomes an outage.',
    fix: "Start the file with SET lock_timeout = '5s'; (and retry on timeout).",
    byEngine: {
      mysql: {
        fix: 'Start the file with SET SESSION lock_wait_timeout = 5; (and retry on timeout).',
      },
    },
  },
  {
    id: 'suppression-without-reason',
    kind: 'directive',
    title: 'Suppression without a reason',
    engines: BOTH,
    severity: LOCKING_ERROR,
    why: 'A suppression is a decision someone will need to understand later; without a reason it cannot be reviewed.',
    fix: 'Write the reason after the rule id: -- cutover:allow <rule-id> <reason>.',
  },
  {
    id: 'invalid-directive',
    kind: 'directive',
    title: 'Unknown cutover: directive or rule id',
    engines: BOTH,
    severity: LOCKING_ERROR,
    why: 'A mistyped directive or rule id would silently do nothing.',
    fix: 'Use -- cutover:phase expand|contract, -- cutover:engine postgres|mysql, -- cutover:transaction wrapped|none, or -- cutover:allow <rule-id> <reason> with a rule id from the rules table.',
  },
  {
    id: 'unused-suppression',
    kind: 'directive',
    title: 'Suppression that matches no finding',
    engines: BOTH,
    severity: LOCKING_WARNING,
    why: 'A suppression that suppresses nothing is stale or sits on the wrong line, and would silently hide a later finding on that statement.',
    fix: 'Put -- cutover:allow on the line(s) just before the statement it is about (or at the end of its last line), or remove it.',
  },
] as const satisfies readonly Rule[];

export type RuleId = (typeof RULES)[number]['id'];

const BY_ID: ReadonlyMap<string, Rule> = new Map(RULES.map((r) => [r.id, r]));

export function isRuleId(id: string): id is RuleId {
  return BY_ID.has(id);
}

export function getRule(id: RuleId): Rule {
  const rule = BY_ID.get(id);
  if (rule === undefined) throw new Error(`unknown rule ${id}`);
  return rule;
}

/** The rule's severity, why and fix as they apply to one engine. */
export function ruleFor(id: RuleId, engine: Engine): { severity: { expand: Severity; contract: Severity }; why: string; fix: string } {
  const rule = getRule(id);
  const over = rule.byEngine?.[engine];
  return { severity: over?.severity ?? rule.severity, why: over?.why ?? rule.why, fix: over?.fix ?? rule.fix };
}

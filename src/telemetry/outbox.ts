/**
 * The webhook outbox: events accepted for delivery, kept in `<stateDir>/webhooks.db` (SQLite)
 * until their target answered for good, so that what was queued when the daemon stopped (or
 * died) is delivered after it starts again. At least once: an event delivered just before a
 * crash may be sent again with the same delivery id, which receivers deduplicate on.
 *
 * Owns: its own database file (never the state database, so a slow webhook never holds the
 * pipeline's writes). Must never: throw into the notifier (a database that cannot be opened or
 * written turns the outbox into memory only, logged once), or store a secret: bodies hold the
 * payload only; signatures are made at send time.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Logger } from '../lib/logger.ts';

export const WEBHOOKS_DB_FILE = 'webhooks.db';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, queued_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_target ON outbox (target, id);
`;

export interface OutboxEntry { id: number | null; body: string }

/** A target's key in the outbox: a hash of its URL (whose path may carry a credential). */
export function targetKey(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 32);
}

export class Outbox {
  private db: DatabaseSync | null = null;
  private readonly log: Logger;

  /** `stateDir` null: memory only (nothing survives a restart). */
  constructor(stateDir: string | null, log: Logger) {
    this.log = log;
    if (stateDir === null) return;
    const file = path.join(stateDir, WEBHOOKS_DB_FILE);
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      const db = new DatabaseSync(file);
      // NORMAL under WAL: a committed entry survives a daemon crash; a power loss may lose the newest.
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 2000;');
      db.exec(SCHEMA);
      this.db = db;
    } catch (err) {
      this.log.error({ err, file }, 'webhook outbox cannot be opened; queued webhooks will not survive a restart');
    }
  }

  /** Entries left for each key, oldest first; entries of targets no longer configured are removed. */
  restore(keys: readonly string[]): Map<string, OutboxEntry[]> {
    const out = new Map<string, OutboxEntry[]>(keys.map((k) => [k, []]));
    if (!this.db) return out;
    try {
      const rows = this.db.prepare('SELECT id, target, body FROM outbox ORDER BY id').all() as unknown as { id: number; target: string; body: string }[];
      let orphans = 0;
      for (const r of rows) {
        const list = out.get(r.target);
        if (list) list.push({ id: r.id, body: r.body });
        else orphans++;
      }
      if (orphans > 0) {
        const known = keys.map(() => '?').join(', ');
        this.db.prepare(`DELETE FROM outbox WHERE target NOT IN (${known || "''"})`).run(...keys);
        this.log.warn({ events: orphans }, 'webhook events queued for targets no longer configured were dropped');
      }
    } catch (err) {
      this.fail(err);
    }
    return out;
  }

  /** Keep an entry until `remove`; returns its id (null when memory only). */
  add(key: string, seq: number, body: string): number | null {
    if (!this.db) return null;
    try {
      const r = this.db.prepare('INSERT INTO outbox (target, seq, body, queued_at) VALUES (?, ?, ?, ?) RETURNING id').get(key, seq, body, Date.now()) as { id: number };
      return r.id;
    } catch (err) {
      this.fail(err);
      return null;
    }
  }

  remove(id: number | null): void {
    if (id === null || !this.db) return;
    try {
      this.db.prepare('DELETE FROM outbox WHERE id = ?').run(id);
    } catch (err) {
      this.fail(err);
    }
  }

  get durable(): boolean {
    return this.db !== null;
  }

  close(): void {
    try { this.db?.close(); } catch { /* already closed */ }
    this.db = null;
  }

  private fail(err: unknown): void {
    this.log.error({ err }, 'webhook outbox write failed; queued webhooks are kept in memory only from now on');
    this.close();
  }
}

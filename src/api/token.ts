/**
 * The admin token: `CUTOVER_TOKEN` if set, else a random token generated on the daemon's first
 * start into `<stateDir>/admin.token` with mode 0600. Compared in constant time.
 */
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync, existsSync, chmodSync, statSync } from 'node:fs';
import path from 'node:path';
import { CutoverError } from '../lib/errors.ts';

export const TOKEN_FILE = 'admin.token';
const TOKEN_BYTES = 32;

export function tokenFile(stateDir: string): string {
  return path.join(stateDir, TOKEN_FILE);
}

/** Daemon side: the token to require, creating the token file on first start. */
export function ensureToken(stateDir: string, env: NodeJS.ProcessEnv = process.env): { token: string; source: 'env' | 'file' | 'generated' } {
  const fromEnv = env.CUTOVER_TOKEN?.trim();
  if (fromEnv) return { token: fromEnv, source: 'env' };
  const file = tokenFile(stateDir);
  if (existsSync(file)) {
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600); // never leave it readable by others
    return { token: readFileSync(file, 'utf8').trim(), source: 'file' };
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(TOKEN_BYTES).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return { token, source: 'generated' };
}

/** Client side: `CUTOVER_TOKEN`, else the daemon's token file. */
export function readToken(stateDir: string | null, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.CUTOVER_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  if (stateDir) {
    try {
      return readFileSync(tokenFile(stateDir), 'utf8').trim();
    } catch {
      // fall through to the error below
    }
  }
  throw new CutoverError('CUTOVER_ERR_UNAUTHORIZED', `no admin token: set CUTOVER_TOKEN or run this where the daemon's token file is readable (${stateDir ? tokenFile(stateDir) : 'no config file'})`);
}

/** Constant-time comparison (hash first so lengths never leak through timing). */
export function tokenMatches(expected: string, given: string): boolean {
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

/**
 * What every CLI command shares: where the daemon is, the token, output streams, exit codes.
 * Commands talk to the daemon through the admin API only (never the store or the controller).
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CutoverError, ERROR_CODES, EXIT, isCutoverError } from '../lib/errors.ts';
import { loadClientConfigFile, loadConfigFile, resolveConfigPath, ConfigError, type ClientConfig } from '../config/load.ts';
import type { LoadedConfig } from '../config/schema.ts';
import type { AdminClient } from '../api/client.ts';
import { readToken } from '../api/token.ts';
import { connectableHost, hostPort } from '../lib/address.ts';

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** The exit code of a command that ended with `err` (the table in lib/errors.ts). */
export function exitCodeFor(err: unknown): number {
  return isCutoverError(err) ? ERROR_CODES[err.code].exit : EXIT.FAILED;
}

/** What a command module gets from main.ts to register itself (drill, report, migrate…). */
export interface CommandKit {
  io: Io;
  /** Run `fn` with a client of the daemon, closed afterwards whatever happens. */
  withClient: <T>(cmd: Command, fn: (c: AdminClient) => Promise<T>) => Promise<T>;
  json: (v: unknown) => void;
  setExit: (code: number) => void;
  configOf: (cmd: Command) => string | undefined;
}

/** Load the config named by -c (or ./cutover.yaml). */
export function loadConfig(io: Io, file: string | undefined): LoadedConfig {
  return loadConfigFile(resolveConfigPath(file, io.cwd), io.env);
}

/**
 * The admin client for client commands: CUTOVER_ADMIN_URL, else the config's admin.listen.
 * Loaded here, not at start: the client is built on undici (about 28 MB of RSS), which
 * `cutover up` — the daemon runs in this process too — does not need.
 */
export async function connect(io: Io, configFile: string | undefined, service?: string): Promise<AdminClient> {
  const explicitUrl = io.env.CUTOVER_ADMIN_URL?.trim();
  let config: ClientConfig | null = null;
  const path = resolveConfigPath(configFile, io.cwd);
  if (configFile !== undefined || existsSync(path)) {
    // Only admin and stateDir: a client need not have the daemon's environment (DATABASE_URL…).
    config = loadClientConfigFile(path, io.env);
  } else if (!explicitUrl) {
    throw new CutoverError('CUTOVER_ERR_USAGE', `no ${path} here: pass -c FILE, or set CUTOVER_ADMIN_URL (and CUTOVER_TOKEN)`);
  }
  const adminTls = config?.admin.tls;
  const baseUrl = explicitUrl || `${adminTls ? 'https' : 'http'}://${hostPort({ host: connectableHost(config!.admin.listen.host), port: config!.admin.listen.port })}`;
  const token = readToken(config ? config.stateDir : null, io.env);
  // With admin.tls, trust the daemon's own certificate (self-signed is the common case on one host).
  let ca: Buffer[] | undefined;
  if (adminTls) {
    try { ca = [readFileSync(adminTls.cert)]; } catch { /* unreadable here: the system roots decide */ }
  }
  const { AdminClient } = await import('../api/client.ts');
  const svc = service ?? io.env.CUTOVER_SERVICE?.trim();
  const names = config?.serviceNames;
  if (svc && names && !names.includes(svc)) {
    throw new CutoverError('CUTOVER_ERR_USAGE', `--service ${svc}: no such service in ${path} (services: ${names.join(', ')})`);
  }
  return new AdminClient({ baseUrl, token, ca, service: svc || undefined });
}

/** `{"error": {"code", "message", "details"}}` on stdout, like the admin API's errors. */
export function printJsonError(io: Io, err: unknown): void {
  const e = isCutoverError(err) ? err : new CutoverError('CUTOVER_ERR_INTERNAL', err instanceof Error ? err.message : String(err));
  io.stdout.write(`${JSON.stringify({ error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } }, null, 2)}\n`);
}

export function printError(io: Io, err: unknown): void {
  if (err instanceof ConfigError) {
    io.stderr.write(`cutover: invalid configuration\n${err.message}\n`);
    return;
  }
  if (isCutoverError(err)) {
    io.stderr.write(`cutover: ${err.message}${io.env.CUTOVER_DEBUG ? ` [${err.code}]` : ''}\n`);
    return;
  }
  io.stderr.write(`cutover: ${err instanceof Error ? (io.env.CUTOVER_DEBUG ? err.stack : err.message) : String(err)}\n`);
}

/**
 * A client of HAProxy's runtime API (the stats socket, `level admin`): one connection per call,
 * HAProxy answers and closes. Commands are checked for characters that would start a second
 * command (`;`, newline) so that a value can never smuggle one in.
 *
 * Owns: the socket exchange and the parsing of `show stat` CSV. Must never: decide anything about
 * routing (the engine does), or hold a connection open between calls (except `stream`).
 */
import net from 'node:net';
import { CutoverError } from '../../lib/errors.ts';

/** A call that does not answer within this time fails (HAProxy answers in microseconds). */
export const RUNTIME_CALL_TIMEOUT_MS = 5_000;

export interface StatRow {
  pxname: string;
  svname: string;
  /** Every other column by its `show stat` header name (numbers stay strings; use `num`). */
  [field: string]: string;
}

export class RuntimeApi {
  readonly socket: string;

  constructor(socket: string) {
    this.socket = socket;
  }

  /** Runs one command; resolves to HAProxy's answer (text). */
  exec(command: string, timeoutMs = RUNTIME_CALL_TIMEOUT_MS): Promise<string> {
    if (/[;\n\r]/.test(command)) throw new CutoverError('CUTOVER_ERR_INTERNAL', `refusing a runtime API command with a separator: ${JSON.stringify(command)}`);
    return this.#call(`${command}\n`, timeoutMs);
  }

  /**
   * Runs several commands on one connection, in order (HAProxy executes `a; b` one after the
   * other). Resolves to the concatenated answers.
   */
  batch(commands: readonly string[], timeoutMs = RUNTIME_CALL_TIMEOUT_MS): Promise<string> {
    for (const c of commands) if (/[;\n\r]/.test(c)) throw new CutoverError('CUTOVER_ERR_INTERNAL', `refusing a runtime API command with a separator: ${JSON.stringify(c)}`);
    return this.#call(`${commands.join('; ')}\n`, timeoutMs);
  }

  /** True when the socket accepts a connection and answers `show info`. */
  async alive(timeoutMs = 1_000): Promise<boolean> {
    try {
      const out = await this.exec('show info', timeoutMs);
      return out.includes('Pid:');
    } catch {
      return false;
    }
  }

  /** `show stat` as rows (frontends, backends, servers). */
  async stat(): Promise<StatRow[]> {
    return parseStatCsv(await this.exec('show stat'));
  }

  #call(payload: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const s = net.connect(this.socket);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new CutoverError('CUTOVER_ERR_INTERNAL', `HAProxy runtime API did not answer within ${timeoutMs} ms (${this.socket})`));
      }, timeoutMs);
      s.on('connect', () => s.end(payload));
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('error', (err) => {
        clearTimeout(timer);
        reject(new CutoverError('CUTOVER_ERR_INTERNAL', `HAProxy runtime API unreachable at ${this.socket}: ${err.message}`, { cause: err }));
      });
      s.on('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
    });
  }
}

/** `show stat` CSV → rows keyed by header name (the header line starts with `# `). */
export function parseStatCsv(text: string): StatRow[] {
  const lines = text.split('\n');
  const header = lines[0]?.replace(/^# /, '').split(',') ?? [];
  const rows: StatRow[] = [];
  for (let i = 1; i < lines.length; i++) {
    if (lines[i] === '') continue;
    const cols = lines[i].split(',');
    const row = { pxname: cols[0], svname: cols[1] } as StatRow;
    for (let j = 2; j < header.length; j++) if (header[j] !== '') row[header[j]] = cols[j] ?? '';
    rows.push(row);
  }
  return rows;
}

export function num(row: StatRow | undefined, field: string): number {
  const v = row?.[field];
  return v === undefined || v === '' ? 0 : Number(v);
}

/**
 * Answers of commands that succeed print nothing, or a known success text; anything else is an
 * error text. Returns the error lines (empty when every command succeeded).
 */
export function runtimeErrors(answer: string): string[] {
  const ok = [/^$/, /^New server registered\.?$/i, /^Server deleted\.?$/i, /^Done\.?$/i, /^IP changed from/i, /^no need to change the addr/i, /^port changed from/i, /^no need to change the port/i];
  return answer.split('\n').map((l) => l.trim()).filter((l) => !ok.some((re) => re.test(l)));
}

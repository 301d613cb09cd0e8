/**
 * TLS certificate and key files for a listener (router or admin): read and checked as a pair, so
 * that a reload with a mismatched or half-written pair is refused and the running one stays.
 *
 * Owns: reading the files. Must never: log or put key material in an error (paths only).
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { CutoverError } from './errors.ts';

export interface TlsFiles {
  /** PEM certificate (chain) file. */
  cert: string;
  /** PEM private key file. */
  key: string;
}

/** Reads both files and checks that the key belongs to the certificate. `setting` names them in errors. */
export function loadTlsFiles(files: TlsFiles, setting: string): { cert: Buffer; key: Buffer } {
  const read = (file: string, what: 'cert' | 'key'): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new CutoverError('CUTOVER_ERR_CONFIG', `${setting}.${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { details: { field: `${setting}.${what}`, file } });
    }
  };
  const pair = { cert: read(files.cert, 'cert'), key: read(files.key, 'key') };
  try {
    createSecureContext(pair); // throws on a malformed file or a key that does not match
  } catch (err) {
    // OpenSSL's reason ("key values mismatch", "no start line") names no secret.
    throw new CutoverError('CUTOVER_ERR_CONFIG', `${setting}: ${files.cert} and ${files.key} are not a usable certificate and key (${(err as Error).message})`, { details: { field: setting } });
  }
  return pair;
}

/** Cutover's own version (package.json), read once. */
import { readFile } from 'node:fs/promises';

let cached: Promise<string> | null = null;

export function packageVersion(): Promise<string> {
  cached ??= readFile(new URL('../../package.json', import.meta.url), 'utf8').then((t) => (JSON.parse(t) as { version: string }).version);
  return cached;
}

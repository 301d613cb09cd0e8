/**
 * The secret values a loaded config holds (webhook HMAC keys, webhook header values), so that the
 * environment given to children can be searched for them (src/lib/child-env.ts). Owns nothing
 * else; must never log or return these values anywhere but to that filter.
 */
import type { Config } from './schema.ts';

export function configSecrets(config: Pick<Config, 'notifications'>): string[] {
  const out: string[] = [];
  for (const n of config.notifications ?? []) {
    if (n.secret) out.push(n.secret);
    for (const v of Object.values(n.headers ?? {})) out.push(v);
  }
  return out;
}

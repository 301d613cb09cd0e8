/**
 * Address ranges ("10.0.0.0/8", "2001:db8::/32", or one address) for `router.trustedProxies`,
 * checked with node:net's BlockList. IPv4-mapped IPv6 client addresses (`::ffff:10.0.0.1`, what a
 * dual-stack listener reports) match IPv4 ranges.
 */
import { BlockList, isIP } from 'node:net';

export interface Cidr { address: string; prefix: number; family: 'ipv4' | 'ipv6' }

/** Parses "addr/prefix" or a bare address; null when it is neither. */
export function parseCidr(text: string): Cidr | null {
  const [addr, prefixText, ...rest] = text.trim().split('/');
  if (rest.length > 0) return null;
  const v = isIP(addr);
  if (v === 0) return null;
  const family = v === 4 ? 'ipv4' : 'ipv6';
  const max = v === 4 ? 32 : 128;
  if (prefixText === undefined) return { address: addr, prefix: max, family };
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return null;
  return { address: addr, prefix: Number(prefixText), family };
}

/** A set of ranges; `has(addr)` for a client address as Node reports it. */
export class AddressSet {
  readonly size: number;
  readonly #list = new BlockList();

  constructor(ranges: readonly string[]) {
    let n = 0;
    for (const r of ranges) {
      const c = parseCidr(r);
      if (c === null) throw new TypeError(`not an address or CIDR range: ${JSON.stringify(r)}`);
      this.#list.addSubnet(c.address, c.prefix, c.family);
      n++;
    }
    this.size = n;
  }

  has(addr: string | undefined): boolean {
    if (this.size === 0 || addr === undefined) return false;
    if (addr.startsWith('::ffff:') && addr.includes('.')) return this.#list.check(addr.slice(7), 'ipv4');
    const v = isIP(addr);
    return v !== 0 && this.#list.check(addr, v === 4 ? 'ipv4' : 'ipv6');
  }
}

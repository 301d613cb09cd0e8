/**
 * Per-request choice of colour during a gradual switch: a share of visitors goes to the split
 * colour, by request share and never by instance counts (a colour with one instance takes its
 * share as well as one with ten; see traefik#9436 for what replica rounding does). A visitor's
 * hash h ∈ [0, 1) picks the split colour when h < share, so a visitor keeps its colour while
 * the share holds and, as it grows, one already on the new colour stays there.
 *
 * Owns: visitor hashing and the visitor cookie. Must never: look at anything but the request's
 * own headers and the split's data (the decision is the route table's, made per request).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Stickiness } from './route-table.ts';

import { DEFAULT_VISITOR_COOKIE } from '../config/defaults.ts';

export { DEFAULT_VISITOR_COOKIE };
/** How long a visitor cookie lasts: one day, longer than any sensible gradual switch. */
export const VISITOR_COOKIE_MAX_AGE_S = 86_400;

/** FNV-1a (32 bit) of a string, as a number in [0, 1). Stable across processes and restarts. */
export function visitorHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) / 0x1_0000_0000;
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let from = 0;
  while (from < header.length) {
    const at = header.indexOf(name, from);
    if (at === -1) return undefined;
    const before = at === 0 ? ';' : header[at - 1];
    if ((before === ';' || before === ' ') && header[at + name.length] === '=') {
      const end = header.indexOf(';', at);
      return header.slice(at + name.length + 1, end === -1 ? undefined : end).trim();
    }
    from = at + name.length;
  }
  return undefined;
}

export interface SplitChoice {
  /** Send this request to the split colour. */
  split: boolean;
  /** A Set-Cookie value to add to the answer (a new visitor, cookie stickiness), else null. */
  setCookie: string | null;
}

const NO_COOKIE_SPLIT: SplitChoice = Object.freeze({ split: true, setCookie: null });
const NO_COOKIE_STAY: SplitChoice = Object.freeze({ split: false, setCookie: null });

/** Decides one request. `secure`: the listener speaks HTTPS (the cookie gets `Secure`). */
export function chooseSplit(req: IncomingMessage, share: number, stickiness: Stickiness, secure: boolean): SplitChoice {
  if (share <= 0) return NO_COOKIE_STAY;
  if (share >= 1) return NO_COOKIE_SPLIT;
  if (stickiness.kind === 'cookie') {
    const id = cookieValue(req.headers.cookie, stickiness.name);
    if (id !== undefined && id !== '') return visitorHash(id) < share ? NO_COOKIE_SPLIT : NO_COOKIE_STAY;
    const fresh = randomUUID();
    const cookie = `${stickiness.name}=${fresh}; Path=/; Max-Age=${VISITOR_COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
    return { split: visitorHash(fresh) < share, setCookie: cookie };
  }
  if (stickiness.kind === 'header') {
    const v = req.headers[stickiness.name];
    const key = Array.isArray(v) ? v.join(',') : v;
    if (key !== undefined && key !== '') return visitorHash(key) < share ? NO_COOKIE_SPLIT : NO_COOKIE_STAY;
  }
  return Math.random() < share ? NO_COOKIE_SPLIT : NO_COOKIE_STAY;
}

/**
 * Preview on the live listener: a tester on the real hostname reaches the preview colour (the
 * candidate) by sending a header or a cookie. Allowed only from trusted addresses (any value),
 * or from anywhere with a value signed by the configured secret that has not expired.
 *
 * Signed value: `<expires, epoch seconds>.<base64url HMAC-SHA256(secret, "cutover-preview:" + expires)>`.
 *
 * Owns: deciding whether one request may see the preview. Must never: log or echo the secret or a
 * value, or let an untrusted unsigned request through (such a request is served live as usual).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AddressSet } from '../lib/cidr.ts';
import { cookieValue } from './split.ts';

import { DEFAULT_PREVIEW_COOKIE, DEFAULT_PREVIEW_HEADER } from '../config/defaults.ts';

export { DEFAULT_PREVIEW_COOKIE, DEFAULT_PREVIEW_HEADER };

export interface PreviewAccessOptions {
  /** Request header that asks for the preview (lower-case). */
  header: string;
  /** Cookie that asks for the preview. */
  cookie: string;
  /** Addresses or CIDR ranges allowed with any value. */
  trusted: readonly string[];
  /** HMAC key for signed values (from anywhere); null: only trusted addresses. */
  secret: string | null;
}

function mac(secret: string, expires: number): string {
  return createHmac('sha256', secret).update(`cutover-preview:${expires}`).digest('base64url');
}

/** A signed preview value valid until `expiresAtMs`. */
export function signPreviewValue(secret: string, expiresAtMs: number): string {
  const expires = Math.floor(expiresAtMs / 1_000);
  return `${expires}.${mac(secret, expires)}`;
}

/** Whether `value` was signed by `secret` and has not expired at `nowMs`. */
export function verifyPreviewValue(secret: string, value: string, nowMs = Date.now()): boolean {
  const dot = value.indexOf('.');
  if (dot <= 0) return false;
  const expires = Number(value.slice(0, dot));
  if (!Number.isSafeInteger(expires) || expires * 1_000 < nowMs) return false;
  const want = Buffer.from(mac(secret, expires));
  const got = Buffer.from(value.slice(dot + 1));
  return got.length === want.length && timingSafeEqual(got, want);
}

export class PreviewAccess {
  readonly #opts: PreviewAccessOptions;
  readonly #trusted: AddressSet;

  constructor(opts: PreviewAccessOptions) {
    this.#opts = { ...opts, header: opts.header.toLowerCase() };
    this.#trusted = new AddressSet(opts.trusted);
  }

  /** Hot path (live listener): whether this request asks for the preview and may have it. */
  allows(req: IncomingMessage): boolean {
    const h = req.headers[this.#opts.header];
    let value = Array.isArray(h) ? h[0] : h;
    if (value === undefined) {
      const cookie = req.headers.cookie;
      if (cookie === undefined) return false;
      value = cookieValue(cookie, this.#opts.cookie);
      if (value === undefined) return false;
    }
    if (this.#trusted.size > 0 && this.#trusted.has(req.socket.remoteAddress)) return true;
    return this.#opts.secret !== null && verifyPreviewValue(this.#opts.secret, value);
  }
}

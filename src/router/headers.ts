/**
 * Header rewriting at the proxy boundary: hop-by-hop headers are dropped in both directions and
 * the X-Forwarded-* set is added to requests. Pure functions over flat raw-header arrays
 * (`[name, value, name, value, …]`, the form Node's HTTP parser gives, so nothing is re-parsed).
 *
 * Owns: which headers cross the proxy. Must never: add identifying headers of its own
 * (no `via`, no colour header) or touch the request line.
 */

/** RFC 9110 §7.6.1: hop-by-hop headers never cross the proxy (plus those named in Connection). */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

/**
 * Request-only drops. `expect`: Node's server already answered `100-continue` before the
 * request reached us. The forwarding headers are rebuilt from what
 * this listener saw, so a client cannot spoof its address, scheme or host to the application
 * (only a trusted proxy's values are kept, see `upstreamRequestHeaders`).
 */
const REQUEST_DROP: ReadonlySet<string> = new Set(['expect', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-for', 'forwarded', 'x-real-ip']);

/**
 * Extra header names listed in a Connection header value (RFC 9110 §7.6.1), lower-cased, or null
 * for the usual values (`keep-alive`, `close`, `upgrade`) that name nothing else.
 */
export function connectionTokens(value: string | undefined): Set<string> | null {
  if (value === undefined) return null;
  const v = value.length < 12 ? value.toLowerCase() : '';
  if (v === 'keep-alive' || v === 'close' || v === 'upgrade') return null; // fast path
  let out: Set<string> | null = null;
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t === '' || HOP_BY_HOP.has(t)) continue;
    (out ??= new Set()).add(t);
  }
  return out;
}

function stripIpv4Mapped(addr: string | undefined): string {
  if (addr === undefined) return 'unknown';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

export interface ForwardingOptions {
  /**
   * The client is a configured trusted proxy (`router.trustedProxies`): its X-Forwarded-For list is
   * kept and extended, and its X-Forwarded-Proto/-Host, Forwarded and X-Real-IP pass unchanged.
   * Otherwise all of these are replaced by what this listener saw (or dropped).
   */
  trusted?: boolean;
  /** Host to send instead of the client's (the authority of an absolute-form request target). */
  host?: string;
}

/**
 * Headers for the upstream request: client headers minus hop-by-hop ones, `X-Forwarded-For`
 * set to the client address (appended to a trusted proxy's list), `X-Forwarded-Proto`/`-Host` set.
 * `Host` is kept as the client sent it (the application sees its public name).
 */
export function upstreamRequestHeaders(raw: readonly string[], connection: string | undefined, clientAddr: string | undefined, proto: string, opts: ForwardingOptions = {}): string[] {
  const named = connectionTokens(connection);
  const trusted = opts.trusted === true;
  const out: string[] = [];
  let xff: string | null = null;
  let host: string | null = opts.host ?? null;
  let xfProto: string | null = null;
  let xfHost: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (named !== null && named.has(lower))) continue;
    if (REQUEST_DROP.has(lower)) {
      if (!trusted) continue;
      // Several X-Forwarded-For lines are one list (RFC 9110 §5.3); keep their order.
      if (lower === 'x-forwarded-for') xff = xff === null ? raw[i + 1] : `${xff}, ${raw[i + 1]}`;
      else if (lower === 'x-forwarded-proto') xfProto ??= raw[i + 1];
      else if (lower === 'x-forwarded-host') xfHost ??= raw[i + 1];
      else if (lower !== 'expect') out.push(name, raw[i + 1]); // forwarded, x-real-ip
      continue;
    }
    if (lower === 'host') {
      if (opts.host !== undefined) continue;
      host = raw[i + 1];
    }
    out.push(name, raw[i + 1]);
  }
  if (opts.host !== undefined) out.push('host', opts.host);
  const client = stripIpv4Mapped(clientAddr);
  out.push('x-forwarded-for', xff === null ? client : `${xff}, ${client}`, 'x-forwarded-proto', xfProto ?? proto);
  const fwdHost = xfHost ?? host;
  if (fwdHost !== null) out.push('x-forwarded-host', fwdHost);
  return out;
}

/**
 * Headers for the client response: upstream headers minus hop-by-hop ones. Node's server adds
 * its own Connection/Keep-Alive and chooses the framing (Content-Length or chunked) itself.
 * Values are the bytes received, latin1-decoded; Node's writer sends them back byte for byte.
 */
export function downstreamResponseHeaders(raw: readonly string[], keep?: ReadonlySet<string>): string[] {
  const out: string[] = [];
  let named: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (keep !== undefined && keep.has(lower)) {
      out.push(name, raw[i + 1]);
      continue;
    }
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') named = connectionTokens(raw[i + 1]);
      continue;
    }
    out.push(name, raw[i + 1]);
  }
  if (named === null) return out;
  // Rare: the upstream named extra hop-by-hop headers in Connection; drop them too.
  const filtered: string[] = [];
  for (let i = 0; i < out.length; i += 2) if (!named.has(out[i].toLowerCase())) filtered.push(out[i], out[i + 1]);
  return filtered;
}

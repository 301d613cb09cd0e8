/**
 * A request capture as plain data (`CaptureSpec`), so that a router in another process (or
 * thread) can decide locally, per live request, what the traffic sample would want: methods,
 * path include/exclude prefixes, at most `perEndpoint` copies per endpoint then one per
 * `refreshMs`, at most one copy per `captureGapMs` and one endpoint lookup per `lookupGapMs`.
 *
 * Owns: the spec's shape, the endpoint key, and `captureFromSpec` (the remote side's `wants`).
 * Must never: keep anything of a request itself (the controller's sample does), or cost more
 * than a clock read for most requests.
 */
import type { RequestCapture } from './data-plane.ts';

/** What a capture chooses, as data that crosses a process boundary (JSON). */
export interface CaptureSpec {
  /** Upper-case methods copied. */
  methods: string[];
  /** Path prefixes copied (on the path without its query)… */
  paths: string[];
  /** …unless one of these prefixes matches. */
  exclude: string[];
  /** Body bytes kept at most (a longer body is marked truncated). */
  maxBodyBytes: number;
  /** Copies of one endpoint before it is refreshed only every `refreshMs`. */
  perEndpoint: number;
  refreshMs: number;
  /** Endpoints remembered at most (the sample's `maxRequests`): the oldest is forgotten first. */
  maxEndpoints: number;
  /** At most one copy per this many ms, whatever the traffic. */
  captureGapMs: number;
  /** At most one endpoint lookup per this many ms while nothing is copied. */
  lookupGapMs: number;
}

/** A capture that may also travel: the in-process router uses `wants`, a remote one rebuilds it from `spec`. */
export interface PortableCapture extends RequestCapture {
  readonly spec?: CaptureSpec;
}

/** `POST /orders/:id`: the method and the path without query, ids (digits, UUIDs, long hex) folded. */
export function endpointKey(method: string, p: string): string {
  const pathname = p.split('?', 1)[0];
  const folded = pathname.split('/').map((seg) => (/^\d+$/.test(seg) || /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(seg) || /^[0-9a-f]{16,}$/i.test(seg) ? ':id' : seg)).join('/');
  return `${method} ${folded}`;
}

export function pathWanted(spec: Pick<CaptureSpec, 'paths' | 'exclude'>, p: string): boolean {
  const pathname = p.split('?', 1)[0];
  if (spec.exclude.some((x) => pathname.startsWith(x))) return false;
  return spec.paths.some((x) => pathname.startsWith(x));
}

/**
 * The router-side `wants` of a spec. It cannot see what the controller's sample holds, so it
 * counts its own copies per endpoint: the sample gets at most as many as it would ask for (and,
 * after a restart of either side, refreshes what it already had).
 */
export function captureFromSpec(spec: CaptureSpec): RequestCapture & { readonly spec: CaptureSpec } {
  const methods = new Set(spec.methods);
  /** Endpoint key → copies made and when the last was; Map order = least recently copied first. */
  const copied = new Map<string, { n: number; at: number }>();
  let nextLookupAt = 0;
  return {
    spec,
    maxBodyBytes: spec.maxBodyBytes,
    wants: (method, p) => {
      if (!methods.has(method)) return false;
      const now = Date.now();
      if (now < nextLookupAt) return false;
      nextLookupAt = now + spec.lookupGapMs;
      if (!pathWanted(spec, p)) return false;
      const key = endpointKey(method, p);
      const seen = copied.get(key);
      if (seen !== undefined && seen.n >= spec.perEndpoint && now - seen.at < spec.refreshMs) return false;
      nextLookupAt = now + spec.captureGapMs;
      copied.delete(key); // re-insert: most recently copied last
      copied.set(key, { n: (seen?.n ?? 0) + 1, at: now });
      if (copied.size > spec.maxEndpoints) copied.delete(copied.keys().next().value as string);
      return true;
    },
  };
}

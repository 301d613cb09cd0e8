/**
 * Which service a request belongs to, by host name and optional path prefix: a pure function of
 * data (a ServiceMap), so the same table can be built by the controller, shipped to a router in
 * another process or through etcd, and evaluated there unchanged.
 *
 * Matching: the Host (or HTTP/2 :authority) without its port, lower-cased, without a trailing dot;
 * an exact host before a `*.example.com` wildcard (one label); among the entries of that host the
 * longest path prefix that matches at a segment boundary (`/api` matches `/api` and `/api/x`, not
 * `/apix`); no entry → the default service, or null (the router answers 404).
 *
 * Owns: the matching rules. Must never: do I/O, or rewrite the request (prefixes are not stripped).
 */

export interface ServiceMapEntry {
  /** Lower-case host name, or `*.example.com`. */
  host: string;
  /** Path prefix starting with `/`; `/` matches every path. */
  prefix: string;
  service: string;
}

export interface ServiceMap {
  readonly entries: readonly ServiceMapEntry[];
  /** Service for requests no entry matches (`router.defaultService`); null = 404. */
  readonly defaultService: string | null;
}

/** Builds a map from each service's hosts and path prefixes. */
export function buildServiceMap(services: readonly { name: string; hosts: readonly string[]; paths?: readonly string[] }[], defaultService: string | null = null): ServiceMap {
  const entries: ServiceMapEntry[] = [];
  for (const s of services) {
    const prefixes = s.paths && s.paths.length > 0 ? s.paths : ['/'];
    for (const h of s.hosts) for (const p of prefixes) entries.push({ host: normaliseHost(h) ?? h, prefix: normalisePrefix(p), service: s.name });
  }
  // Longest prefix first, so the first match of a host is the most specific.
  entries.sort((a, b) => b.prefix.length - a.prefix.length);
  return Object.freeze({ entries: Object.freeze(entries.map((e) => Object.freeze(e))), defaultService });
}

/** Two services claiming the same host and prefix: a config error, found before anything listens. */
export function duplicateRoutes(map: ServiceMap): { host: string; prefix: string; services: [string, string] }[] {
  const seen = new Map<string, string>();
  const out: { host: string; prefix: string; services: [string, string] }[] = [];
  for (const e of map.entries) {
    const key = `${e.host} ${e.prefix}`;
    const other = seen.get(key);
    if (other !== undefined && other !== e.service) out.push({ host: e.host, prefix: e.prefix, services: [other, e.service] });
    else seen.set(key, e.service);
  }
  return out;
}

/** `Shop.Example.com.:443` → `shop.example.com`; `[::1]:8080` → `::1`; null for an empty host. */
export function normaliseHost(host: string | undefined): string | null {
  if (host === undefined || host === '') return null;
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    h = end === -1 ? h.slice(1) : h.slice(1, end);
  } else {
    const colon = h.lastIndexOf(':');
    // One colon: host:port. More: a bare IPv6 address (no port possible without brackets).
    if (colon !== -1 && h.indexOf(':') === colon) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h === '' ? null : h;
}

function normalisePrefix(p: string): string {
  if (p === '' || p === '/') return '/';
  return p.endsWith('/') ? p.slice(0, -1) : p;
}

function prefixMatches(prefix: string, path: string): boolean {
  if (prefix === '/') return true;
  if (!path.startsWith(prefix)) return false;
  const next = path.charCodeAt(prefix.length);
  // End of path, or a segment/query boundary.
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */;
}

/** Per map, its entries by host (longest prefix first): built once, so a request costs a lookup, not a scan. */
const byHost = new WeakMap<ServiceMap, Map<string, ServiceMapEntry[]>>();

function indexOf(map: ServiceMap): Map<string, ServiceMapEntry[]> {
  let idx = byHost.get(map);
  if (idx === undefined) {
    idx = new Map();
    for (const e of map.entries) {
      const list = idx.get(e.host);
      if (list === undefined) idx.set(e.host, [e]);
      else list.push(e);
    }
    byHost.set(map, idx);
  }
  return idx;
}

function firstMatch(entries: readonly ServiceMapEntry[] | undefined, path: string): string | null {
  if (entries !== undefined) for (const e of entries) if (prefixMatches(e.prefix, path)) return e.service;
  return null;
}

/** The service for a request's host and path, or null when none (and no default) applies. */
export function resolveService(map: ServiceMap, rawHost: string | undefined, path: string): string | null {
  const host = normaliseHost(rawHost);
  if (host !== null) {
    const idx = indexOf(map);
    const exact = firstMatch(idx.get(host), path);
    if (exact !== null) return exact;
    const dot = host.indexOf('.');
    if (dot > 0) {
      const wild = firstMatch(idx.get(`*${host.slice(dot)}`), path);
      if (wild !== null) return wild;
    }
  }
  return map.defaultService;
}

/**
 * Host and port as people and URLs write them. Pure functions, no I/O: shared by the daemon
 * (its own URLs), the controller (listener URLs it hands to plugins) and the CLI (where to
 * reach the daemon), so client commands never load the daemon to format an address.
 */

export interface HostPort { host: string; port: number }

/** `host:port`, with IPv6 hosts in brackets (RFC 3986 §3.2.2). */
export function hostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** A wildcard bind address is not connectable; clients use loopback instead. */
export function connectableHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

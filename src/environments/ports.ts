/**
 * Choosing loopback ports for instances. Owns only the probe; never keeps a port open.
 * A probed port can be taken by someone else before the instance binds it (a small race we
 * accept: the instance then fails to listen, exits, and is restarted on a fresh port).
 */
import net from 'node:net';

/** Try to bind `host:port` (0 = any free port); resolves with the bound port, or null if taken. */
export function probePort(host: string, port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(null));
    // exclusive: a cluster primary must not share the handle; we want a real, private bind.
    server.listen({ host, port, exclusive: true }, () => {
      const addr = server.address();
      const bound = typeof addr === 'object' && addr !== null ? addr.port : null;
      server.close(() => resolve(bound));
    });
  });
}

const MAX_PORT_PICKS = 20;

/** A free port on `host` that is not in `reserved` (ports our other instances hold or will reuse). */
export async function pickFreePort(host: string, reserved: ReadonlySet<number>): Promise<number> {
  for (let i = 0; i < MAX_PORT_PICKS; i++) {
    const port = await probePort(host, 0);
    if (port !== null && !reserved.has(port)) return port;
  }
  throw new Error(`no free port on ${host} after ${MAX_PORT_PICKS} tries`);
}

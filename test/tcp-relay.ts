/**
 * A TCP relay (node:net) in front of a server that a test can break and heal: broken, it cuts
 * every relayed connection and refuses new ones — a router cut off from etcd, without touching
 * etcd itself.
 */
import net from 'node:net';

export interface Relay { port: number; break: () => void; heal: () => void; close: () => Promise<void> }

export async function startRelay(target: { host: string; port: number }): Promise<Relay> {
  let broken = false;
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    if (broken) { client.destroy(); return; }
    const upstream = net.createConnection(target.port, target.host);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => { client.destroy(); upstream.destroy(); pairs.delete(pair); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    break: () => {
      broken = true;
      for (const [a, b] of pairs) { a.destroy(); b.destroy(); }
      pairs.clear();
    },
    heal: () => { broken = false; },
    close: () => new Promise<void>((resolve) => {
      for (const [a, b] of pairs) { a.destroy(); b.destroy(); }
      server.close(() => resolve());
    }),
  };
}

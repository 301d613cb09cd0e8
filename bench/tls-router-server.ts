/**
 * The Cutover router alone with a TLS listener (HTTP/2 and HTTP/1.1 by ALPN, certificate by SNI),
 * in its own process, for bench/http2.ts. Argv: CERT KEY ORIGIN_PORT. Sends { type: 'ready', port }
 * over IPC once it listens and routes to the origin.
 */
import type { HealthView } from '../src/health/types.ts';
import { Router } from '../src/router/router.ts';
import { CertificateStore } from '../src/tls/certificate-store.ts';

const [cert, key, originPort] = process.argv.slice(2);
const alwaysHealthy: HealthView = { isHealthy: () => true, reportFailure: () => {} };
const store = new CertificateStore();
store.setFiles(['bench.test'], { cert, key }, 'bench');
const router = new Router({
  listen: { host: '127.0.0.1', port: 0 }, preview: null, tlsListen: { host: '127.0.0.1', port: 0 }, certificates: store,
  drainTimeoutMs: 5_000, health: alwaysHealthy,
});
router.swap({ revision: 1, live: { color: 'blue', version: 'bench', targets: [{ id: 'blue-0', host: '127.0.0.1', port: Number(originPort) }] }, preview: null });
await router.start();
const shutdown = () => { void router.close().finally(() => process.exit(0)); };
process.on('SIGTERM', shutdown);
process.on('disconnect', shutdown);
process.send?.({ type: 'ready', port: router.tlsAddress()!.port });

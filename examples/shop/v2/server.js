// Sample service for the Cutover demo, release v2 (adds a fig). Plain Node.js, no dependencies.
// Cutover sets PORT, CUTOVER_COLOR, CUTOVER_VERSION and CUTOVER_INSTANCE.
import http from 'node:http';

const RELEASE = 'v2';
const port = Number(process.env.PORT ?? 3000);
const color = process.env.CUTOVER_COLOR ?? 'none';
const instance = process.env.CUTOVER_INSTANCE ?? '0';

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const send = (status, body, type = 'application/json') => {
    res.writeHead(status, { 'content-type': type });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };
  if (url.pathname === '/health') return send(200, { ok: true });
  if (url.pathname === '/version') return send(200, { version: RELEASE, color, instance });
  if (url.pathname === '/slow') {
    const ms = Math.min(Number(url.searchParams.get('ms') ?? 1000), 30_000);
    return void setTimeout(() => send(200, { version: RELEASE, color, slept: ms }), ms);
  }
  if (url.pathname === '/echo' && req.method === 'POST') {
    res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' });
    return void req.pipe(res);
  }
  if (url.pathname === '/') return send(200, { service: 'shop', version: RELEASE, color, instance, items: ['apple', 'pear', 'fig'] });
  send(404, { error: 'not found' });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));

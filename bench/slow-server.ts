/**
 * The slow backend behind the origin's `/slow?ms=N`: answers after N ms (at most 30 s) with the
 * colour the origin names in `X-Bench-Colour`, so the benchmark always has long requests in
 * flight on the colour being switched away from.
 *
 *   node bench/slow-server.ts PORT
 */
import http from 'node:http';

/** Upper bound on the delay a request may ask for. */
const MAX_DELAY_MS = 30_000;

const port = Number(process.argv[2]);
const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const ms = Math.min(Number(url.searchParams.get('ms') ?? 1000) || 0, MAX_DELAY_MS);
  const colour = String(req.headers['x-bench-colour'] ?? 'none');
  setTimeout(() => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${colour}\n`);
  }, ms);
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
process.on('disconnect', () => process.exit(0));

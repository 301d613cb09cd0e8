/**
 * A closed-loop HTTPS load generator for bench/http2.ts, in its own process: `connections`
 * connections, each with `streams` requests in flight (HTTP/1.1: always 1, keep-alive), for
 * `seconds`, after a warm-up that opens every connection (TLS handshakes are not what is
 * measured). Argv: h1|h2 PORT CA_FILE CONNECTIONS STREAMS SECONDS. Prints `warm` when the
 * measured part starts, then one JSON line {requests, errors} of the measured part.
 */
import { readFileSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { Agent, request } from 'node:https';

const [proto, portText, caFile, connText, streamText, secondsText] = process.argv.slice(2);
const port = Number(portText);
const ca = readFileSync(caFile);
const connections = Number(connText);
const streams = Number(streamText);
const WARMUP_MS = 1_000;
let until = Date.now() + 3_600_000;
let counting = false;
let requests = 0;
let errors = 0;

function h2once(s: ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    const r = s.request({ ':path': '/', ':authority': 'bench.test' });
    r.on('response', (h) => { if (h[':status'] !== 200) errors++; });
    r.resume();
    r.on('end', () => { if (counting) requests++; resolve(); });
    r.on('error', () => { errors++; resolve(); });
    r.end();
  });
}

const agent = new Agent({ keepAlive: true, maxSockets: connections, ca, servername: 'bench.test', ALPNProtocols: ['http/1.1'] });
function h1once(): Promise<void> {
  return new Promise((resolve) => {
    const r = request({ host: '127.0.0.1', port, path: '/', agent, headers: { host: 'bench.test' } }, (res) => {
      if (res.statusCode !== 200) errors++;
      res.resume();
      res.on('end', () => { if (counting) requests++; resolve(); });
    });
    r.on('error', () => { errors++; resolve(); });
    r.end();
  });
}

const loops: Promise<void>[] = [];
const sessions: ClientHttp2Session[] = [];
for (let c = 0; c < connections; c++) {
  if (proto === 'h2') {
    const s = h2connect(`https://127.0.0.1:${port}`, { ca, servername: 'bench.test' });
    sessions.push(s);
    for (let i = 0; i < streams; i++) loops.push((async () => { while (Date.now() < until) await h2once(s); })());
  } else {
    loops.push((async () => { while (Date.now() < until) await h1once(); })());
  }
}
await new Promise((r) => setTimeout(r, WARMUP_MS));
errors = 0;
counting = true;
until = Date.now() + Number(secondsText) * 1000;
process.stdout.write('warm\n');
await Promise.all(loops);
for (const s of sessions) s.close();
agent.destroy();
process.stdout.write(`${JSON.stringify({ requests, errors })}\n`);

/**
 * The upstream client against scripted upstreams on real loopback sockets: each test's server
 * writes exact response bytes, so framing, reuse and failure rules are checked byte for byte.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { kStaleConnection, UPSTREAM_ERRORS, UpstreamPool, type UpstreamController, type UpstreamHandler, type UpstreamPoolOptions, type UpstreamRequest } from './upstream-pool.ts';

interface Outcome {
  status: number;
  headers: string[];
  body: string;
  error: (Error & { code?: string }) | null;
  events: string[];
}

/** Runs one request through `pool` and collects everything the handler heard. */
function exchange(pool: UpstreamPool, req: Partial<UpstreamRequest> = {}, hooks: { onStart?: (c: UpstreamController) => void; onData?: (c: UpstreamController) => void } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const o: Outcome = { status: 0, headers: [], body: '', error: null, events: [] };
    const h: UpstreamHandler = {
      onRequestStart(c) { o.events.push('start'); hooks.onStart?.(c); },
      onResponseStart(_c, status, headers) { o.events.push('head'); o.status = status; o.headers = headers; },
      onResponseData(c, chunk) { o.events.push('data'); o.body += chunk.toString('latin1'); hooks.onData?.(c); },
      onResponseEnd() { o.events.push('end'); resolve(o); },
      onResponseError(_c, err) { o.events.push('error'); o.error = err; resolve(o); },
    };
    pool.dispatch({ method: 'GET', path: '/', headers: ['host', 'x'], body: null, ...req }, h);
  });
}

/**
 * A raw upstream: `answer(requestHead, socket)` writes whatever bytes the test wants. Records
 * every request (head + body bytes as received) and counts connections.
 */
async function rawUpstream(answer: (head: string, socket: Socket, n: number) => void): Promise<{ server: Server; port: number; connections: number; received: string[] }> {
  const state = { connections: 0, received: [] as string[] };
  let n = 0;
  const server = createServer((socket) => {
    state.connections++;
    let buf = '';
    socket.on('error', () => {});
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      // One request per test step: answer once the head (and any body the test expects) is in.
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buf.slice(0, end);
      const cl = /content-length: (\d+)/i.exec(head);
      const chunked = /transfer-encoding: chunked/i.test(head);
      const rest = buf.slice(end + 4);
      if (cl !== null && rest.length < Number(cl[1])) return;
      if (chunked && !rest.endsWith('0\r\n\r\n')) return;
      state.received.push(buf);
      buf = '';
      answer(head, socket, n++);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return Object.assign(state, { server, port });
}

function poolFor(port: number, o: Partial<UpstreamPoolOptions> = {}): UpstreamPool {
  return new UpstreamPool({ host: '127.0.0.1', port, connectTimeoutMs: 1_000, responseTimeoutMs: 2_000, keepAliveMs: 4_000, maxHeaderBytes: 16 * 1024, ...o });
}

const servers: Server[] = [];
after(() => { for (const s of servers) s.close(); });

async function upstream(answer: (head: string, socket: Socket, n: number) => void) {
  const u = await rawUpstream(answer);
  servers.push(u.server);
  return u;
}

describe('upstream pool', () => {
  test('a keep-alive upstream carries sequential requests on one connection', async () => {
    const u = await upstream((_h, s, n) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-N: ${n}\r\n\r\nok`));
    const pool = poolFor(u.port);
    for (let i = 0; i < 5; i++) {
      const r = await exchange(pool);
      assert.equal(r.status, 200);
      assert.equal(r.body, 'ok');
      assert.deepEqual(r.headers, ['Content-Length', '2', 'X-N', String(i)]);
      assert.deepEqual(r.events, ['start', 'head', 'data', 'end']);
    }
    assert.equal(u.connections, 1);
    assert.match(u.received[0], /^GET \/ HTTP\/1\.1\r\nhost: x\r\n\r\n$/);
    await pool.close();
  });

  test('chunked and close-delimited answers are complete; Connection: close is not reused', async () => {
    const u = await upstream((_h, s, n) => {
      if (n === 0) s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
      else if (n === 1) s.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx');
      else s.end('HTTP/1.0 200 OK\r\n\r\nuntil close');
    });
    const pool = poolFor(u.port);
    assert.equal((await exchange(pool)).body, 'abcde');
    assert.equal((await exchange(pool)).body, 'x');
    const closeDelimited = await exchange(pool);
    assert.equal(closeDelimited.body, 'until close');
    assert.equal(closeDelimited.error, null);
    assert.equal(u.connections, 2, 'the chunked answer kept the connection; Connection: close did not');
    await pool.close();
  });

  test('HEAD reads no body even with Content-Length; 204 and 1xx-then-200 are framed right', async () => {
    const u = await upstream((head, s, n) => {
      if (head.startsWith('HEAD')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
      else if (n === 1) s.write('HTTP/1.1 204 No Content\r\n\r\n');
      else s.write('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody');
    });
    const pool = poolFor(u.port);
    const head = await exchange(pool, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal((await exchange(pool)).status, 204);
    const hinted = await exchange(pool);
    assert.equal(hinted.status, 200);
    assert.equal(hinted.body, 'body');
    assert.equal(u.connections, 1);
    await pool.close();
  });

  test('trailers and heads of more than 32 fields: each answer gets exactly its own headers', async () => {
    const many = Array.from({ length: 40 }, (_, i) => `X-F${i}: ${i}\r\n`).join('');
    const u = await upstream((_h, s, n) => {
      if (n === 0) s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\r\n\r\n');
      else s.write(`HTTP/1.1 200 OK\r\nContent-Length: 1\r\n${many}\r\nz`);
    });
    const pool = poolFor(u.port);
    assert.equal((await exchange(pool)).body, 'ab');
    const r = await exchange(pool);
    assert.equal(r.body, 'z');
    assert.equal(r.headers.length, 82);
    assert.deepEqual(r.headers.slice(0, 4), ['Content-Length', '1', 'X-F0', '0']);
    assert.deepEqual(r.headers.slice(-2), ['X-F39', '39']);
    assert.equal(u.connections, 1);
    await pool.close();
  });

  test('a connection paused for a slow client when its answer completed is reusable', async () => {
    const u = await upstream((_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'));
    const pool = poolFor(u.port, { responseTimeoutMs: 500 });
    // The handler pauses on the data and never resumes (its client is gone by then).
    assert.equal((await exchange(pool, {}, { onData: (c) => c.pause() })).body, 'abc');
    const next = await exchange(pool);
    assert.equal(next.error, null);
    assert.equal(next.body, 'abc');
    assert.equal(u.connections, 1);
    await pool.close();
  });

  test('bytes after a complete answer: the answer is delivered, the connection is never reused', async () => {
    const u = await upstream((_h, s, n) => {
      if (n === 0) s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled');
      else s.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond');
    });
    const pool = poolFor(u.port);
    assert.equal((await exchange(pool)).body, 'first');
    const second = await exchange(pool);
    assert.equal(second.body, 'second', 'the next request must not get the extra bytes');
    assert.equal(u.connections, 2);
    await pool.close();
  });

  test('invalid answers and oversized heads fail with their codes and close the connection', async () => {
    const u = await upstream((_h, s, n) => {
      if (n === 0) s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc');
      else if (n === 1) s.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(2_000)}\r\n\r\n`);
      else s.write('NOT HTTP AT ALL\r\n\r\n');
    });
    const pool = poolFor(u.port, { maxHeaderBytes: 1_024 });
    assert.equal((await exchange(pool)).error?.code, UPSTREAM_ERRORS.invalidResponse);
    assert.equal((await exchange(pool)).error?.code, UPSTREAM_ERRORS.headersOverflow);
    assert.equal((await exchange(pool)).error?.code, UPSTREAM_ERRORS.invalidResponse);
    assert.equal(u.connections, 3);
    assert.equal(pool.size, 0);
  });

  test('a connection closed before the head fails as closed; refused and timeouts carry their codes', async () => {
    const u = await upstream((_h, s) => s.destroy());
    const pool = poolFor(u.port);
    assert.equal((await exchange(pool)).error?.code, UPSTREAM_ERRORS.closed);

    const silent = await upstream(() => {});
    const slow = poolFor(silent.port, { responseTimeoutMs: 150 });
    const t0 = performance.now();
    const timedOut = await exchange(slow);
    assert.equal(timedOut.error?.code, UPSTREAM_ERRORS.headersTimeout);
    assert.ok(performance.now() - t0 >= 140);

    const midBody = await upstream((_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
    const stalled = await exchange(poolFor(midBody.port, { responseTimeoutMs: 150 }));
    assert.deepEqual(stalled.events, ['start', 'head', 'data', 'error']);
    assert.equal(stalled.error?.code, UPSTREAM_ERRORS.bodyTimeout);

    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    assert.equal((await exchange(poolFor(port))).error?.code, 'ECONNREFUSED');
  });

  test('a kept-alive connection closed as the next request arrives: the error says stale; a fresh one does not', async () => {
    // Answers the first request on each connection and closes it when a second one arrives,
    // as an upstream does whose idle timeout fires as the request is sent.
    const u = await upstream((_h, s) => {
      const used = (s as Socket & { used?: boolean }).used === true;
      (s as Socket & { used?: boolean }).used = true;
      if (used) s.destroy();
      else s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const pool = poolFor(u.port);
    assert.equal((await exchange(pool)).body, 'ok');
    const stale = await exchange(pool);
    assert.equal(stale.error?.code, UPSTREAM_ERRORS.closed);
    assert.equal((stale.error as { [kStaleConnection]?: boolean } | null)?.[kStaleConnection], true);
    // A fresh connection (even with an idle one available) answers.
    assert.equal((await exchange(pool)).body, 'ok');
    const again = new Promise<Outcome>((resolve) => {
      const o: Outcome = { status: 0, headers: [], body: '', error: null, events: [] };
      pool.dispatch({ method: 'GET', path: '/', headers: ['host', 'x'], body: null }, {
        onRequestStart() {},
        onResponseStart(_c, status) { o.status = status; },
        onResponseData(_c, chunk) { o.body += chunk.toString(); },
        onResponseEnd() { resolve(o); },
        onResponseError(_c, err) { o.error = err; resolve(o); },
      }, { fresh: true });
    });
    assert.equal((await again).body, 'ok');
    assert.equal(u.connections, 3);

    const dead = await upstream((_h, s) => s.destroy());
    const first = await exchange(poolFor(dead.port));
    assert.equal(first.error?.code, UPSTREAM_ERRORS.closed);
    assert.equal((first.error as { [kStaleConnection]?: boolean } | null)?.[kStaleConnection], undefined, 'a new connection that fails is not stale');
    await pool.close();
  });

  test('an idle connection is closed after keepAliveMs', async () => {
    const u = await upstream((_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    const pool = poolFor(u.port, { keepAliveMs: 100 });
    await exchange(pool);
    assert.equal(pool.size, 1);
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(pool.size, 0);
  });

  test('request bodies: Content-Length streams as is, others are sent chunked; POST without body gets content-length: 0', async () => {
    const seen: { te: string | undefined; cl: string | undefined; body: string }[] = [];
    const server = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        seen.push({ te: req.headers['transfer-encoding'], cl: req.headers['content-length'], body });
        res.end('ok');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server as unknown as Server);
    const pool = poolFor((server.address() as AddressInfo).port);
    const sized = await exchange(pool, { method: 'PUT', headers: ['host', 'x', 'content-length', '11'], body: Readable.from([Buffer.from('hello '), Buffer.from('world')]) });
    assert.equal(sized.status, 200);
    const stream = new PassThrough();
    const chunked = exchange(pool, { method: 'POST', headers: ['host', 'x'], body: stream });
    stream.write('part one, ');
    setTimeout(() => stream.end('part two'), 20);
    assert.equal((await chunked).status, 200);
    assert.equal((await exchange(pool, { method: 'POST' })).status, 200);
    assert.deepEqual(seen, [
      { te: undefined, cl: '11', body: 'hello world' },
      { te: 'chunked', cl: undefined, body: 'part one, part two' },
      { te: undefined, cl: '0', body: '' },
    ]);
    await pool.close();
  });

  test('an answer before the request body is complete: delivered, body no longer sent, connection not reused', async () => {
    // Answers as soon as the head arrives, without reading the body.
    const early = createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.write('HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n'));
    });
    early.listen(0, '127.0.0.1');
    await once(early, 'listening');
    servers.push(early);
    const pool = poolFor((early.address() as AddressInfo).port);
    const body = new PassThrough();
    const r = exchange(pool, { method: 'POST', headers: ['host', 'x', 'content-length', '100'], body });
    body.write('x'.repeat(10));
    const out = await r;
    assert.equal(out.status, 413);
    assert.equal(pool.size, 0);
    assert.equal(body.listenerCount('data'), 0, 'the body is no longer forwarded');
  });

  test('abort: the handler hears nothing more and the connection is closed', async () => {
    const u = await upstream((_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial'));
    const pool = poolFor(u.port);
    const events: string[] = [];
    await new Promise<void>((resolve) => {
      pool.dispatch({ method: 'GET', path: '/', headers: ['host', 'x'], body: null }, {
        onRequestStart() { events.push('start'); },
        onResponseStart() { events.push('head'); },
        onResponseData(c) { events.push('data'); c.abort(new Error('client left')); setTimeout(resolve, 50); },
        onResponseEnd() { events.push('end'); },
        onResponseError() { events.push('error'); },
      });
    });
    assert.deepEqual(events, ['start', 'head', 'data']);
    assert.equal(pool.size, 0);
  });

  test('close() refuses new requests, waits for busy connections; destroy() fails them', async () => {
    const u = await upstream((_h, s, n) => { if (n === 0) setTimeout(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na'), 100); });
    const pool = poolFor(u.port);
    const busy = exchange(pool);
    await new Promise((r) => setTimeout(r, 20));
    const closing = pool.close();
    assert.equal((await exchange(pool)).error?.code, UPSTREAM_ERRORS.poolClosed);
    assert.equal((await busy).body, 'a');
    await closing;
    assert.equal(pool.size, 0);

    const pool2 = poolFor(u.port);
    const hanging = exchange(pool2);
    await new Promise((r) => setTimeout(r, 20));
    await pool2.destroy();
    assert.equal((await hanging).error?.code, UPSTREAM_ERRORS.poolClosed);
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectionTokens, downstreamFromParsed, downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts';

test('request: hop-by-hop and Connection-named headers are dropped; X-Forwarded-* are set', () => {
  const out = upstreamRequestHeaders(
    ['Host', 'a.example', 'Connection', 'Keep-Alive, X-Hop', 'X-Hop', '1', 'TE', 'trailers', 'Transfer-Encoding', 'chunked',
      'X-Forwarded-For', '10.0.0.1', 'x-forwarded-for', '10.0.0.2', 'X-Forwarded-Proto', 'https', 'Expect', '100-continue', 'Accept', '*/*'],
    'Keep-Alive, X-Hop', '::ffff:192.0.2.1', 'http',
  );
  assert.deepEqual(out, ['Host', 'a.example', 'Accept', '*/*', 'x-forwarded-for', '10.0.0.1, 10.0.0.2, 192.0.2.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', 'a.example']);
});

test('response: hop-by-hop dropped, repeated headers kept, Buffers decoded byte-exact', () => {
  const out = downstreamResponseHeaders([
    Buffer.from('Connection'), Buffer.from('close, X-Hop'), Buffer.from('X-Hop'), Buffer.from('1'),
    Buffer.from('Set-Cookie'), Buffer.from('a=1'), Buffer.from('Set-Cookie'), Buffer.from('b=2'),
    Buffer.from('X-Latin'), Buffer.from([0xe9]), Buffer.from('Keep-Alive'), Buffer.from('timeout=5'),
  ]);
  assert.deepEqual(out, ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-Latin', '\u00e9']);
});

test('connection tokens: the common values name nothing', () => {
  assert.equal(connectionTokens(undefined), null);
  assert.equal(connectionTokens('keep-alive'), null);
  assert.equal(connectionTokens('Close'), null);
  assert.deepEqual([...connectionTokens('keep-alive, X-A ,x-b')!], ['x-a', 'x-b']);
});

test('response from undici\'s parsed headers: same rules, arrays expanded', () => {
  assert.deepEqual(
    downstreamFromParsed({ connection: 'keep-alive, x-hop', 'x-hop': '1', 'keep-alive': 'timeout=5', 'set-cookie': ['a=1', 'b=2'], 'content-length': '3' }),
    ['set-cookie', 'a=1', 'set-cookie', 'b=2', 'content-length', '3'],
  );
});

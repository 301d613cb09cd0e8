import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectionTokens, downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts';

test('request: hop-by-hop and Connection-named headers are dropped; X-Forwarded-* are set', () => {
  const out = upstreamRequestHeaders(
    ['Host', 'a.example', 'Connection', 'Keep-Alive, X-Hop', 'X-Hop', '1', 'TE', 'trailers', 'Transfer-Encoding', 'chunked',
      'X-Forwarded-For', '10.0.0.1', 'x-forwarded-for', '10.0.0.2', 'X-Forwarded-Proto', 'https', 'Expect', '100-continue', 'Accept', '*/*'],
    'Keep-Alive, X-Hop', '::ffff:192.0.2.1', 'http',
  );
  // An untrusted client's forwarding headers are replaced, not extended (issue #6).
  assert.deepEqual(out, ['Host', 'a.example', 'Accept', '*/*', 'x-forwarded-for', '192.0.2.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', 'a.example']);
});

test('request from a trusted proxy: its X-Forwarded-For list is extended, its proto/host/Forwarded kept', () => {
  const raw = ['Host', 'a.example', 'X-Forwarded-For', '10.0.0.1', 'x-forwarded-for', '10.0.0.2', 'X-Forwarded-Proto', 'https',
    'X-Forwarded-Host', 'public.example', 'Forwarded', 'for=10.0.0.1', 'X-Real-IP', '10.0.0.1'];
  assert.deepEqual(upstreamRequestHeaders(raw, undefined, '::ffff:192.0.2.1', 'http', { trusted: true }), [
    'Host', 'a.example', 'Forwarded', 'for=10.0.0.1', 'X-Real-IP', '10.0.0.1',
    'x-forwarded-for', '10.0.0.1, 10.0.0.2, 192.0.2.1', 'x-forwarded-proto', 'https', 'x-forwarded-host', 'public.example',
  ]);
  // The same headers from anyone else are dropped or replaced.
  assert.deepEqual(upstreamRequestHeaders(raw, undefined, '198.51.100.9', 'https'), [
    'Host', 'a.example', 'x-forwarded-for', '198.51.100.9', 'x-forwarded-proto', 'https', 'x-forwarded-host', 'a.example',
  ]);
});

test('request with an absolute-form target: Host is the target\'s authority', () => {
  const out = upstreamRequestHeaders(['Host', 'a.example', 'Accept', '*/*'], undefined, '127.0.0.1', 'http', { host: 'b.example' });
  assert.deepEqual(out, ['Accept', '*/*', 'host', 'b.example', 'x-forwarded-for', '127.0.0.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', 'b.example']);
});

test('response: hop-by-hop dropped (and those Connection names), repeated headers and latin1 bytes kept', () => {
  const out = downstreamResponseHeaders([
    'Connection', 'close, X-Hop', 'X-Hop', '1',
    'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2',
    'X-Latin', '\u00e9', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked',
  ]);
  assert.deepEqual(out, ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-Latin', '\u00e9']);
});

test('connection tokens: the common values name nothing', () => {
  assert.equal(connectionTokens(undefined), null);
  assert.equal(connectionTokens('keep-alive'), null);
  assert.equal(connectionTokens('Close'), null);
  assert.deepEqual([...connectionTokens('keep-alive, X-A ,x-b')!], ['x-a', 'x-b']);
});

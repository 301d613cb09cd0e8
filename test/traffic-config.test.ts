/** The config keys of real-traffic checks: `switch`, `router.previewAccess`, `mirror` and `session` gates. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../src/config/load.ts';
import { ConfigError } from '../src/config/load.ts';

const base = 'environments: { process: { command: node server.js } }\n';
const load = (yaml: string) => parseConfig(`${base}${yaml}`, { file: 'cutover.yaml', baseDir: '/tmp' });
const fails = (yaml: string, re: RegExp) => assert.throws(() => load(yaml), (e: unknown) => {
  assert.ok(e instanceof ConfigError, String(e));
  assert.match(e.message, re);
  return true;
});

test('switch: steps by share (the final 100 % is the switch itself), stickiness spelled out, errors with file:line:field', () => {
  const c = load('switch: { steps: [5%, 25%, 100%], stepDuration: 30s, stickiness: header:X-User-Id }\n');
  assert.deepEqual(c.switch, { steps: [0.05, 0.25], stepDuration: 30_000, stickiness: { kind: 'header', name: 'x-user-id' } });
  assert.deepEqual(load('switch: { steps: [10%] }\n').switch, { steps: [0.1], stepDuration: 120_000, stickiness: { kind: 'cookie', name: 'cutover_visitor' } });
  assert.deepEqual(load('switch: { steps: [50%], stickiness: none }\n').switch?.stickiness, { kind: 'none' });
  assert.equal(load('').switch, undefined, 'absent: the instant switch');
  fails('switch: { steps: [25%, 5%] }\n', /cutover\.yaml:2: switch\.steps\[1\]: expected steps in ascending order/);
  fails('switch: { steps: [5%], stickiness: ip }\n', /cutover\.yaml:2: switch\.stickiness: expected "cookie", "cookie:NAME", "header:X-User-Id" or "none", got "ip"/);
  fails('switch: { steps: [0%] }\n', /switch\.steps\[0\]: expected a share above 0/);
});

test('router.previewAccess: trusted addresses or a secret (or both) are required; the secret is long enough', () => {
  const c = load('router: { previewAccess: { trusted: [10.0.0.0/8], secret: "0123456789abcdef" } }\n');
  assert.deepEqual(c.router.previewAccess, { header: 'x-cutover-preview', cookie: 'cutover_preview', trusted: ['10.0.0.0/8'], secret: '0123456789abcdef' });
  fails('router: { previewAccess: {} }\n', /cutover\.yaml:2: router\.previewAccess\.trusted: expected trusted addresses, a secret, or both/);
  fails('router: { previewAccess: { secret: short } }\n', /router\.previewAccess\.secret: expected at least 16 characters/);
  fails('router: { previewAccess: { trusted: [nowhere] } }\n', /router\.previewAccess\.trusted\[0\]: expected an address or CIDR range/);
});

test('mirror and session gates: defaults, limits and field paths', () => {
  const c = load('gates:\n  - name: shadow\n    mirror: { sample: 5%, ignore: [body.id, "body.items[].ts", headers.etag] }\n  - name: s\n    session: { login: { method: POST, path: /login }, check: { path: /me } }\n');
  assert.deepEqual(c.gates[0], {
    name: 'shadow', kind: 'mirror', timeout: 330_000,
    mirror: { sample: 0.05, methods: ['GET', 'HEAD'], minRequests: 200, duration: 300_000, maxDiffRate: 0.01, ignore: ['body.id', 'body.items[].ts', 'headers.etag'], headers: ['content-type'], maxBodySize: 262_144, queue: 1_000, concurrency: 8, requestTimeout: 10_000 },
  });
  assert.equal(c.gates[1].kind, 'session');
  fails('gates:\n  - name: shadow\n    mirror: { ignore: [id] }\n', /cutover\.yaml:4: gates\[0\]\.mirror\.ignore\[0\]: expected a field path like "body\.id"/);
  fails('gates:\n  - name: shadow\n    mirror: { sample: 0% }\n', /gates\[0\]\.mirror\.sample: expected a share above 0/);
  fails('gates:\n  - name: s\n    session: { login: { path: /login } }\n', /gates\[0\]\.session\.check: expected both login and check/);
  fails('gates:\n  - name: s\n    session: {}\n', /gates\[0\]\.session: expected login and check \(create sessions\), or live/);
  assert.deepEqual(load('gates:\n  - name: s\n    session: { live: { minRequests: 10 } }\n').gates[0], { name: 's', kind: 'session', timeout: 180_000, session: { sessions: 5, live: { sample: 1, minRequests: 10, duration: 120_000, maxLossRate: 0 } } });
});

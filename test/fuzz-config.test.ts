/**
 * Property-based fuzzing of the config loader (issue #6, fast-check): whatever the text,
 * `parseConfig` either returns a frozen config or throws a `ConfigError` whose every problem names
 * the file and a line inside it — never a TypeError, a YAML exception or a zod error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ConfigError, parseConfig } from '../src/config/load.ts';

const FILE = 'cutover.yaml';
const RUNS = Number(process.env.CUTOVER_FUZZ_RUNS ?? 300);

/** The property: a config, or a ConfigError pointing at file:line for every problem. */
function loadsOrExplains(text: string): void {
  let err: unknown;
  try {
    const cfg = parseConfig(text, { file: FILE, baseDir: '/srv/app', env: { HOME: '/root' } });
    assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.router), 'a loaded config is frozen');
    return;
  } catch (e) {
    err = e;
  }
  if (!(err instanceof ConfigError)) throw new Error(`parseConfig threw ${(err as Error)?.name}: ${(err as Error)?.message}\n--- input ---\n${text}`);
  const lines = text.split(/\r\n|\r|\n/).length;
  assert.ok(err.problems.length > 0);
  for (const p of err.problems) {
    assert.equal(p.file, FILE);
    assert.ok(Number.isInteger(p.line) && p.line >= 1 && p.line <= lines + 1, `line ${p.line} of ${lines}: ${p.message}`);
    assert.ok(p.message.length > 0);
  }
  for (const line of err.message.split('\n')) assert.match(line, /^cutover\.yaml:\d+: /);
  assert.equal(err.code, 'CUTOVER_ERR_CONFIG');
}

/** A valid config to mutate. */
const BASE = {
  app: 'shop',
  router: { listen: '127.0.0.1:8080', preview: '127.0.0.1:8081', drainTimeout: '30s', maxBodySize: '10mb', trustedProxies: ['10.0.0.0/8'] },
  admin: { listen: '127.0.0.1:8900' },
  stateDir: '.cutover',
  environments: { provider: 'process', process: { command: 'node server.js', instances: 2, env: { A: 'b' } } },
  health: { path: '/health', interval: '1s' },
  gates: [{ name: 'smoke', http: { path: '/health' } }],
  standby: { keepFor: '30m' },
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Replace, delete or add one value somewhere in `obj` along `path`. */
function mutate(obj: Json, path: string[], action: 'set' | 'delete' | 'add', value: Json, key: string): Json {
  if (path.length === 0 || obj === null || typeof obj !== 'object') return action === 'set' ? value : obj;
  const [head, ...rest] = path;
  const copy: Json = Array.isArray(obj) ? [...obj] : { ...obj };
  const target = copy as Record<string, Json>;
  const k = Array.isArray(obj) ? String(Number(head) % Math.max(1, obj.length)) : head;
  if (!(k in target)) {
    if (action === 'add' && !Array.isArray(obj)) target[key] = value;
    return copy;
  }
  if (rest.length === 0) {
    if (action === 'delete') delete target[k];
    else if (action === 'set') target[k] = value;
    else if (target[k] !== null && typeof target[k] === 'object' && !Array.isArray(target[k])) (target[k] as Record<string, Json>)[key] = value;
    return copy;
  }
  target[k] = mutate(target[k], rest, action, value, key);
  return copy;
}

const knownKeys = ['app', 'router', 'admin', 'stateDir', 'environments', 'health', 'gates', 'standby', 'listen', 'preview', 'drainTimeout', 'maxBodySize', 'maxHeaderCount',
  'trustedProxies', 'tls', 'cert', 'key', 'provider', 'process', 'static', 'command', 'instances', 'env', 'path', 'interval', 'keepFor', 'http', 'name', '0', 'blue', 'green'];
const scalar = fc.oneof(
  fc.constantFrom('30s', '-1s', '1e309', '${NOPE}', '${HOME}', '${X:-5s}', '0', '', ' ', '10mb', 'lots', '::1', '0.0.0.0:99999', '[::1]:80', '10.0.0.0/33', 'null', '~', 'yes', 'no'),
  fc.string({ maxLength: 20 }),
  fc.integer(), fc.double(), fc.boolean(), fc.constant(null),
);
const value: fc.Arbitrary<Json> = fc.oneof({ depthSize: 'small' }, scalar as fc.Arbitrary<Json>, fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>);

test('fuzz: mutated valid configs load or fail with file:line problems', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.array(fc.constantFrom(...knownKeys), { minLength: 1, maxLength: 4 }), fc.constantFrom('set', 'delete', 'add') as fc.Arbitrary<'set' | 'delete' | 'add'>, value, fc.constantFrom(...knownKeys, 'typo', 'sudo')), { minLength: 1, maxLength: 4 }),
      fc.boolean(),
      (mutations, flow) => {
        let cfg: Json = BASE as unknown as Json;
        for (const [p, action, v, key] of mutations) cfg = mutate(cfg, p, action, v, key);
        loadsOrExplains(stringify(cfg, flow ? { collectionStyle: 'flow' } : undefined));
      },
    ),
    { numRuns: RUNS },
  );
});

test('fuzz: arbitrary JSON documents (as YAML) load or fail with file:line problems', () => {
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => loadsOrExplains(stringify(v))), { numRuns: RUNS });
});

test('fuzz: arbitrary text (YAML syntax errors, tabs, anchors, tags, control characters) fails with file:line problems', () => {
  const yamlish = fc.array(fc.oneof(
    fc.constantFrom('app: x\n', 'router:\n', '  listen: ', '- ', '&a ', '*a', '!!binary ', '!tag ', '? ', ': ', '{', '}', '[', ']', '"', "'", '\t', '\n', '  ', '#', '%YAML 1.2\n', '---\n', '...\n', '|\n', '>\n', '${', '}', '\r\n', '\u0000', '\ufeff'),
    fc.string({ maxLength: 10 }),
  ), { maxLength: 40 }).map((parts) => parts.join(''));
  fc.assert(fc.property(yamlish, (text) => loadsOrExplains(text)), { numRuns: RUNS });
});

test('a YAML alias bomb is refused quickly as a config error', () => {
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
    'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]', 'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]', 'f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]'].join('\n');
  const t0 = performance.now();
  assert.throws(() => parseConfig(bomb, { file: FILE, baseDir: '/srv' }), ConfigError);
  assert.ok(performance.now() - t0 < 1_000);
});

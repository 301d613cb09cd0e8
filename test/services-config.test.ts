/** `services:` in cutover.yaml: inheritance of the top-level keys, per-service state, and errors with file:line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../src/config/load.ts';
import { isCutoverError } from '../src/lib/errors.ts';

const parse = (yaml: string) => parseConfig(yaml, { file: 'cutover.yaml', baseDir: '/srv/app' });

test('a service inherits the top-level keys and overrides some, objects key by key', () => {
  const c = parse([
    'stateDir: /var/lib/cutover',
    'environments: { provider: process, process: { command: node server.js, instances: 3 } }',
    'health: { path: /healthz, interval: 2s }',
    'gates: [{ name: smoke, http: { path: / } }]',
    'analysis: {}',
    'services:',
    '  shop:',
    '    hosts: [Shop.Example.com]',
    '    health: { interval: 500ms }',
    '  blog:',
    '    hosts: [blog.example.com]',
    '    paths: [/blog]',
    '    tls: { cert: blog.crt, key: blog.key }',
    '    environments: { provider: static, static: { blue: [10.0.0.1:80], green: [10.0.0.2:80] } }',
    '    gates: []',
    '    analysis: null',
  ].join('\n'));
  assert.equal(c.services?.length, 2);
  const [shop, blog] = c.services!;
  assert.deepEqual(shop.hosts, ['shop.example.com']);
  assert.equal(shop.config.app, 'shop');
  assert.equal(shop.config.stateDir, '/var/lib/cutover/services/shop');
  assert.equal(shop.config.health.path, '/healthz');
  assert.equal(shop.config.health.interval, 500);
  assert.equal(shop.config.environments.process?.instances, 3);
  assert.equal(shop.config.gates.length, 1);
  assert.ok(shop.config.analysis);
  assert.equal(blog.config.environments.provider, 'static');
  assert.deepEqual(blog.paths, ['/blog']);
  assert.deepEqual(blog.tls, { cert: '/srv/app/blog.crt', key: '/srv/app/blog.key' });
  assert.equal(blog.config.gates.length, 0);
  assert.equal(blog.config.analysis, undefined, 'null removes an inherited setting');
  // Without services: exactly as before.
  assert.equal(parse('environments: { process: { command: node server.js } }').services, null);
});

test('the top level may leave environments to each service', () => {
  const c = parse('services:\n  a:\n    hosts: [a.test]\n    environments: { process: { command: node a.js } }\n  b:\n    hosts: [b.test]\n    environments: { process: { command: node b.js } }\n');
  assert.deepEqual(c.services!.map((s) => s.config.environments.process?.command), ['node a.js', 'node b.js']);
});

test('service errors name the file, line and field', () => {
  for (const [yaml, pattern] of [
    ['environments: { process: { command: x } }\nservices:\n  shop:\n    hosts: []\n', /cutover\.yaml:4: services\.shop\.hosts: expected at least one host name/],
    ['environments: { process: { command: x } }\nservices:\n  shop:\n    hosts: [shop.test]\n    helth: {}\n', /cutover\.yaml:5: services\.shop\.helth: unknown setting "helth"/],
    ['environments: { process: { command: x } }\nservices:\n  shop:\n    hosts: [shop.test]\n    health: { interval: soon }\n', /cutover\.yaml:5: services\.shop\.health\.interval: expected a duration/],
    ['environments: { process: { command: x } }\nservices:\n  shop:\n    hosts: ["https://shop.test"]\n', /cutover\.yaml:4: services\.shop\.hosts\[0\]: expected a host name/],
    ['environments: { process: { command: x } }\nservices:\n  a: { hosts: [x.test] }\n  b: { hosts: [x.test] }\n', /cutover\.yaml:4: services\.b\.hosts: x\.test is already routed to service a/],
    ['router: { defaultService: c }\nenvironments: { process: { command: x } }\nservices:\n  a: { hosts: [x.test] }\n', /cutover\.yaml:1: router\.defaultService: no service named "c"/],
    ['router: { tls: { acme: { directory: "https://acme.test/dir" } } }\nenvironments: { process: { command: x } }\n', /router\.tls\.listen: acme needs a TLS listener of its own/],
    ['router: { tls: { listen: ":443", acme: { directory: "https://acme.test/dir" } } }\nenvironments: { process: { command: x } }\n', /cutover\.yaml:1: router\.tls\.acme: no host names to certify/],
    ['router: { tls: { listen: ":443", acme: { directory: "https://acme.test/dir" } } }\nenvironments: { process: { command: x } }\nservices:\n  a: { hosts: ["*.x.test"] }\n', /services\.a\.hosts: \*\.x\.test: ACME HTTP-01 cannot certify a wildcard/],
    ['router: { tls: { cert: a.crt } }\nenvironments: { process: { command: x } }\n', /router\.tls\.key: cert and key go together/],
  ] as const) {
    assert.throws(() => parse(yaml), (err: unknown) => {
      assert.ok(isCutoverError(err, 'CUTOVER_ERR_CONFIG'));
      assert.match((err as Error).message, pattern);
      return true;
    }, String(pattern));
  }
});

test('router.tls: listen and ACME with defaults; a caFile is relative to the config file', () => {
  const c = parse('router: { tls: { listen: "0.0.0.0:443", acme: { directory: "https://acme.test/dir", email: ops@example.com, caFile: ca.pem, hosts: [a.test] } } }\nenvironments: { process: { command: x } }\n');
  assert.deepEqual(c.router.tls?.listen, { host: '0.0.0.0', port: 443 });
  assert.equal(c.router.tls?.acme?.renewBefore, 30 * 24 * 3_600_000);
  assert.equal(c.router.tls?.acme?.caFile, '/srv/app/ca.pem');
});

/**
 * Property-based fuzzing of the admin API's mutating routes (issue #6, fast-check): random JSON
 * (and non-JSON) bodies to POST deployments, promote, abort, rollback and drill. Every answer is a
 * 4xx JSON error with a CUTOVER_ERR_ code — never a 500, never a hang — and the state is unchanged.
 *
 * The daemon is set up so that no random body can be a valid request: process provider, nothing
 * deployed (promote/abort/rollback/drill have nothing to act on), and a deployment needs a release
 * directory that exists (generated paths that happen to exist are skipped).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fc from 'fast-check';
import { Agent, request } from 'undici';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { TEST_TOKEN, configYaml, freePorts, tempDir } from './helpers.ts';

const RUNS = Number(process.env.CUTOVER_FUZZ_RUNS ?? 150);
const ROUTES = ['/deployments', '/promote', '/abort', '/rollback', '/drill'] as const;

const { dir, cleanup } = tempDir();
let daemon: Daemon;
let agent: Agent;
before(async () => {
  const ports = await freePorts();
  daemon = await Daemon.start(parseConfig(configYaml(ports), { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
  agent = new Agent({ connections: 4 });
});
after(async () => {
  await agent.close();
  await daemon.stop({ stopInstances: true });
  cleanup();
});

function snapshot(): string {
  const s = daemon.controller.status();
  return JSON.stringify({ live: s.live, standby: s.standby, deployment: s.deployment, envs: s.environments, revision: s.router.revision, history: daemon.controller.history({ limit: 100 }), events: daemon.controller.events({ limit: 10_000 }).length });
}

async function post(route: string, body: string): Promise<{ status: number; type: string; json: unknown }> {
  const res = await request(`${daemon.adminUrl()}/api/v1${route}`, {
    method: 'POST', dispatcher: agent, body, headersTimeout: 5_000, bodyTimeout: 5_000,
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
  });
  const text = await res.body.text();
  let json: unknown = null;
  try { json = JSON.parse(text); } catch { /* asserted below */ }
  return { status: res.statusCode, type: String(res.headers['content-type'] ?? ''), json };
}

/** Bodies shaped like the real ones, with wrong, odd or extra values; plus any JSON; plus non-JSON. */
const odd = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('', ' ', '../..', '/', '\u0000', 'v1\nv2', 'a'.repeat(200), '${HOME}', '<script>', '__proto__'), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.jsonValue({ maxDepth: 2 }));
const shaped = fc.record({ version: odd, path: odd, manual: odd, force: odd, reason: odd, rate: odd, connections: odd, holdMs: odd }, { requiredKeys: [] });
const withExtra = fc.tuple(shaped, fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 })).map(([a, b]) => ({ ...b, ...a }));
const body = fc.oneof(
  shaped.map((v) => JSON.stringify(v)),
  withExtra.map((v) => JSON.stringify(v)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 60 }),
  fc.constantFrom('{', '{"version":', '[', 'null', '"x"', '{"__proto__": {"admin": true}}', '{"constructor": {"prototype": {"x": 1}}}', '{"version": "v1", "version": "v2"}', '\u0000', '{"a":'.repeat(200)),
);

for (const route of ROUTES) {
  test(`fuzz: POST ${route} with random bodies → 4xx JSON error with a code, never 500, state unchanged`, async () => {
    const before = snapshot();
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        let parsed: unknown;
        try { parsed = JSON.parse(b); } catch { parsed = undefined; }
        const p = (parsed as { path?: unknown } | null)?.path;
        fc.pre(!(typeof p === 'string' && p !== '' && existsSync(p))); // an existing directory could make a valid deploy
        const r = await post(route, b);
        seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
        assert.ok(r.status >= 400 && r.status < 500, `${route} ${b} → ${r.status} ${JSON.stringify(r.json)}`);
        assert.match(r.type, /^application\/json/);
        const code = (r.json as { error?: { code?: unknown } } | null)?.error?.code;
        assert.ok(typeof code === 'string' && code.startsWith('CUTOVER_ERR_'), `${route} ${b} → ${JSON.stringify(r.json)}`);
      }),
      { numRuns: RUNS },
    );
    assert.equal(snapshot(), before, 'state unchanged');
    assert.ok(({}.constructor as unknown as { admin?: unknown }).admin === undefined && ({} as { x?: unknown }).x === undefined, 'no prototype pollution');
    console.log(`# POST ${route}: ${[...seen].map(([s, n]) => `${n}× ${s}`).join(', ')}`);
  });
}

/**
 * The structure of src/ as a test: every folder has its place in LAYERS (test/import-graph.ts),
 * no file circle, at most MAX_UPWARD_IMPORTS imports that run back up, the full Router and
 * Controller composed only where they may be, and client commands never load the daemon.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  LAYERS, MAX_UPWARD_IMPORTS, ROOT, boundaryBreaches, circles, describe, folderOf, importGraph, loadedWith, sourceFiles, upwardImports,
} from './import-graph.ts';

const edges = importGraph();

test('every folder of src/ has a place in the layer order', () => {
  const folders = readdirSync(path.join(ROOT, 'src')).filter((n) => statSync(path.join(ROOT, 'src', n)).isDirectory());
  assert.deepEqual(folders.filter((f) => !LAYERS.includes(f)), [], 'place the new folder in LAYERS (test/import-graph.ts)');
  assert.deepEqual(sourceFiles().filter((f) => folderOf(f) === null), [], 'a file directly under src/ belongs in a folder');
});

test('the import graph of src/ has no circle', () => {
  assert.deepEqual(circles(edges), []);
});

test(`at most ${MAX_UPWARD_IMPORTS} imports run back up the layers`, () => {
  const up = upwardImports(edges);
  assert.ok(up.length <= MAX_UPWARD_IMPORTS, `${up.length} upward imports:\n${up.map(describe).join('\n')}`);
});

test('the full Router, the Controller and the admin server are imported only where they are composed', () => {
  assert.deepEqual(boundaryBreaches(edges).map(describe), []);
});

test('plugins import the plugin API, never the controller, the daemon or the admin server', () => {
  const plugins = ['gates', 'analysis', 'migrations', 'telemetry'];
  const bad = edges.filter((e) => plugins.includes(folderOf(e.from) ?? '') && ['controller', 'daemon', 'api', 'cli'].includes(folderOf(e.to) ?? ''));
  assert.deepEqual(bad.map(describe), []);
  const seams = edges.filter((e) => e.from.endsWith('/plugin.ts') && plugins.includes(folderOf(e.from) ?? '') && e.to === 'src/plugin-api/plugin.ts');
  assert.equal(new Set(seams.map((e) => e.from)).size, plugins.length, 'each plugin takes PluginFactory from src/plugin-api/plugin.ts');
});

test('client commands load no daemon: no router, store, controller or providers in the CLI start-up', () => {
  const loaded = [...loadedWith('src/cli/main.ts', edges)];
  const daemonSide = loaded.filter((f) => ['daemon', 'router', 'controller', 'health', 'environments', 'gates', 'analysis', 'migrations', 'telemetry'].includes(folderOf(f) ?? '')
    || f === 'src/store/sqlite-store.ts' || f === 'src/api/server.ts');
  assert.deepEqual(daemonSide, []);
});

test('the check finds a circle and an upward import when there is one', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-graph-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (file: string, text: string) => {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  };
  write('src/lib/a.ts', "import { b } from './b.ts';\nexport const a = 1;\n");
  write('src/lib/b.ts', "import { a } from './a.ts';\nexport const b = 2;\n// import { x } from '../cli/x.ts' is a comment, not an import\n");
  write('src/router/r.ts', "import type { X } from '../cli/x.ts';\nexport const r = 3;\n");
  write('src/cli/x.ts', "export type X = number;\nexport const later = () => import('../lib/a.ts');\n");
  write('src/router/r.test.ts', "import { a } from '../cli/x.ts';\n");
  const g = importGraph(dir);
  assert.deepEqual(circles(g), [['src/lib/a.ts', 'src/lib/b.ts']]);
  assert.deepEqual(upwardImports(g).map((e) => `${e.from} -> ${e.to}`), ['src/router/r.ts -> src/cli/x.ts']);
  const dyn = g.find((e) => e.from === 'src/cli/x.ts');
  assert.equal(dyn?.dynamic, true);
  assert.deepEqual([...loadedWith('src/router/r.ts', g)], ['src/router/r.ts'], 'a type-only import loads nothing');
});

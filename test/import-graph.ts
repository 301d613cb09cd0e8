/**
 * The import graph of src/ as the code has it, read with the TypeScript parser (comments and
 * strings are not imports), and the layer order it is held against: ONE place for that order,
 * read by test/import-graph.test.ts and described in docs/architecture.md.
 *
 * `node test/import-graph.ts` prints the layers, every import that runs back up, and every circle.
 * Reads files only; never runs or loads the code it reads.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The folders of src/, from the ground up. A file may import its own folder and any folder
 * listed BEFORE its own; an import of a folder listed after it runs back up. A new folder must
 * be placed here (the test says so), which is the moment to decide where it stands.
 */
export const LAYERS: readonly string[] = [
  'lib', //          errors, durations, addresses, logger: no Cutover concept
  'ui', //           the dashboard's static page
  'config', //       the cutover.yaml schema, every section, loading
  'environments', // colours, instances, providers that start and stop them
  'health', //       active and passive health of instances
  'tls', //          certificates served by SNI, ACME (issue 18); the router reads its store
  'router', //       the data plane and its contract (data-plane.ts, route-table.ts), the router process
  'fleet', //        routers on many hosts behind etcd: the router's sync and the controller's view
  'engines', //      which data plane runs (builtin, worker threads, HAProxy) and the HAProxy driver
  'store', //        what survives a crash: state, deployments, events
  'plugin-api', //   what plugins see: hooks, views of the controller and router, the status type
  'gates', //        plugins, below the controller: they get views, never the controller
  'analysis',
  'migrations',
  'telemetry',
  'controller', //   the pipeline; the only holder of DataPlane.swap
  'api', //          admin HTTP API and its client
  'daemon', //       composes everything for `cutover up`
  'cli', //          commands
];

/** The most imports allowed to run back up (issue 14: "at most 3"). */
export const MAX_UPWARD_IMPORTS = 3;

/**
 * Files only the listed folders may import (besides their own folder): the full Router, the
 * Controller and the admin server are composed by the daemon; everyone else gets an interface.
 */
export const ONLY_IMPORTED_BY: Readonly<Record<string, readonly string[]>> = {
  'src/router/router.ts': ['daemon', 'engines'],
  'src/controller/controller.ts': ['api', 'daemon'],
  'src/api/server.ts': ['daemon'],
  'src/daemon/daemon.ts': ['cli'],
  'src/daemon/plugins.ts': ['cli'],
};

export interface Edge {
  /** Importing file, relative to the project root (`src/cli/main.ts`). */
  from: string;
  to: string;
  line: number;
  /** `import type` / every name `type`: erased, loads nothing at run time. */
  typeOnly: boolean;
  /** `await import(...)`: loaded when that line runs, not with the file. */
  dynamic: boolean;
}

/** Shipped source files: src/**\/*.ts without tests and fixtures. */
export function sourceFiles(root = ROOT): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) {
        if (name !== 'fixtures' && name !== 'node_modules') walk(full);
      } else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) {
        out.push(path.relative(root, full).split(path.sep).join('/'));
      }
    }
  };
  walk(path.join(root, 'src'));
  return out.sort();
}

/** Every relative import of `file` that names another source file. */
export function importsOf(file: string, root = ROOT): Edge[] {
  const text = readFileSync(path.join(root, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const edges: Edge[] = [];
  const add = (spec: string, node: ts.Node, typeOnly: boolean, dynamic: boolean) => {
    if (!spec.startsWith('.')) return;
    const to = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
    if (!existsSync(path.join(root, to))) return;
    edges.push({ from: file, to, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, typeOnly, dynamic });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const c = node.importClause;
      const named = c?.namedBindings && ts.isNamedImports(c.namedBindings) ? c.namedBindings.elements : null;
      const typeOnly = c !== undefined && (c.isTypeOnly || (c.name === undefined && named !== null && named.length > 0 && named.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier.text, node, typeOnly, false);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const named = node.exportClause && ts.isNamedExports(node.exportClause) ? node.exportClause.elements : null;
      add(node.moduleSpecifier.text, node, node.isTypeOnly || (named !== null && named.length > 0 && named.every((e) => e.isTypeOnly)), false);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      add(node.arguments[0].text, node, false, true);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, node, true, false); // `import('./x.ts').Name` in a type
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

export function importGraph(root = ROOT): Edge[] {
  const files = new Set(sourceFiles(root));
  return [...files].flatMap((f) => importsOf(f, root)).filter((e) => files.has(e.to));
}

/** `src/router/router.ts` → `router`; null for a file directly under src/. */
export function folderOf(file: string): string | null {
  const parts = file.split('/');
  return parts.length > 2 ? parts[1] : null;
}

export function layerIndex(file: string): number {
  const folder = folderOf(file);
  return folder === null ? -1 : LAYERS.indexOf(folder);
}

/** Imports from a folder to one listed after it in LAYERS. */
export function upwardImports(edges: readonly Edge[]): Edge[] {
  return edges.filter((e) => folderOf(e.from) !== folderOf(e.to) && layerIndex(e.to) > layerIndex(e.from));
}

/** Circles of files (strongly connected components of two or more, or a file importing itself), Tarjan's algorithm. */
export function circles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) {
    if (!next.has(e.from)) next.set(e.from, []);
    next.get(e.from)!.push(e.to);
  }
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const strong = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) { strong(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || (next.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of new Set(edges.flatMap((e) => [e.from, e.to]))) if (!index.has(v)) strong(v);
  return out;
}

/** Imports of a guarded file (ONLY_IMPORTED_BY) from a folder not allowed to. */
export function boundaryBreaches(edges: readonly Edge[]): Edge[] {
  return edges.filter((e) => {
    const allowed = ONLY_IMPORTED_BY[e.to];
    if (!allowed) return false;
    const folder = folderOf(e.from);
    return folder !== folderOf(e.to) && (folder === null || !allowed.includes(folder));
  });
}

/** Files loaded at run time when `entry` is loaded: static imports that are not type-only. */
export function loadedWith(entry: string, edges: readonly Edge[]): Set<string> {
  const seen = new Set<string>([entry]);
  const todo = [entry];
  while (todo.length > 0) {
    const f = todo.pop()!;
    for (const e of edges) {
      if (e.from !== f || e.typeOnly || e.dynamic || seen.has(e.to)) continue;
      seen.add(e.to);
      todo.push(e.to);
    }
  }
  return seen;
}

export const describe = (e: Edge) => `${e.from}:${e.line} -> ${e.to}${e.typeOnly ? ' (type)' : ''}${e.dynamic ? ' (dynamic)' : ''}`;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const edges = importGraph();
  const files = sourceFiles();
  for (const [i, layer] of [...LAYERS.entries()].reverse()) {
    const mine = files.filter((f) => folderOf(f) === layer);
    const uses = new Set(edges.filter((e) => folderOf(e.from) === layer && folderOf(e.to) !== layer).map((e) => folderOf(e.to)));
    console.log(`${String(i + 1).padStart(2)} ${layer.padEnd(13)} ${String(mine.length).padStart(3)} files  imports: ${[...uses].sort((a, b) => LAYERS.indexOf(b!) - LAYERS.indexOf(a!)).join(', ') || '-'}`);
  }
  const up = upwardImports(edges);
  console.log(`\n${up.length} upward import(s) (at most ${MAX_UPWARD_IMPORTS})${up.map((e) => `\n  ${describe(e)}`).join('')}`);
  const c = circles(edges);
  console.log(`${c.length} circle(s)${c.map((x) => `\n  ${x.join(' <-> ')}`).join('')}`);
  const b = boundaryBreaches(edges);
  console.log(`${b.length} boundary breach(es)${b.map((e) => `\n  ${describe(e)}`).join('')}`);
}

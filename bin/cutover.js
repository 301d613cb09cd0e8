#!/usr/bin/env -S node --max-semi-space-size=8
// Cutover runs its TypeScript sources directly: Node.js >= 22.19 strips types natively
// (erasable syntax only, checked by `tsc --erasableSyntaxOnly`), so there is no build step.
//
// The Node.js flags on the first line are part of how Cutover runs (the benchmark reads them
// from there): --max-semi-space-size=8 caps V8's young generation at 16 MB, which under load
// otherwise grows to 64-128 MB, at no measurable cost in throughput.
//
// This file must parse and run on any Node.js still in use (no syntax newer than ES2020), so that
// an older one gets a sentence instead of "Unknown file extension .ts" (issue 16).
import module from 'node:module';

// Type stripping without a flag: Node.js 22.18+ (22.19 is the first we test), 23.6+, 24+.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19) || (major === 23 && minor < 6)) {
  process.stderr.write(
    `Cutover needs Node.js \u2265 22.19 (found v${process.versions.node}).\n` +
    'Install Node.js 24 LTS (https://nodejs.org), or run it from the checkout with `npx cutover` or `npm run`,\n' +
    'which use the Node.js the project pins as a dev dependency (npm ci installs it).\n',
  );
  process.exit(2);
}

// Before any .ts file is loaded: with the compile cache warm, Node.js reuses the type-stripped
// sources and never loads its type stripper (about 30 MB of RSS). The cache lives in
// NODE_COMPILE_CACHE, else <tmpdir>/node-compile-cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
if (typeof module.enableCompileCache === 'function') module.enableCompileCache();

// Installed from the registry or a packed tarball, the sources sit under node_modules, where
// Node.js refuses to strip types (ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING). There, our own
// .ts files (never a dependency's) are stripped by a load hook with Node's own stripper, the same
// transformation. A checkout, or `npm link` (a symlink Node resolves to the checkout), needs none.
const root = new URL('../', import.meta.url).href;
if (root.includes('/node_modules/') && typeof module.registerHooks === 'function' && typeof module.stripTypeScriptTypes === 'function') {
  // stripTypeScriptTypes is still marked experimental in Node.js 24: its one warning is noise here.
  const emitWarning = process.emitWarning;
  process.emitWarning = (w, ...rest) => {
    if (/stripTypeScriptTypes/.test(String(w && w.message ? w.message : w))) return;
    emitWarning.call(process, w, ...rest);
  };
  module.registerHooks({
    load(url, context, nextLoad) {
      if (!url.startsWith(root) || !url.endsWith('.ts') || url.slice(root.length).includes('node_modules/')) return nextLoad(url, context);
      const loaded = nextLoad(url, { ...context, format: 'module' });
      return { format: 'module', source: module.stripTypeScriptTypes(String(loaded.source), { mode: 'strip' }), shortCircuit: true };
    },
  });
}

import('../src/cli/main.ts').then(({ main }) => main(process.argv)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.stack : err); process.exitCode = 1; },
);

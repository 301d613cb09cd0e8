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

import('../src/cli/main.ts').then(({ main }) => main(process.argv)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.stack : err); process.exitCode = 1; },
);

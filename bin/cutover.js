#!/usr/bin/env -S node --max-semi-space-size=8
// Cutover runs its TypeScript sources directly: Node.js >= 22.19 strips types natively
// (erasable syntax only, checked by `tsc --erasableSyntaxOnly`), so there is no build step.
//
// The Node.js flags on the first line are part of how Cutover runs (the benchmark reads them
// from there): --max-semi-space-size=8 caps V8's young generation at 16 MB, which under load
// otherwise grows to 64-128 MB, at no measurable cost in throughput.
import module from 'node:module';

// Before any .ts file is loaded: with the compile cache warm, Node.js reuses the type-stripped
// sources and never loads its type stripper (about 30 MB of RSS). The cache lives in
// NODE_COMPILE_CACHE, else <tmpdir>/node-compile-cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
if (typeof module.enableCompileCache === 'function') module.enableCompileCache();

import('../src/cli/main.ts').then(({ main }) => main(process.argv)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.stack : err); process.exitCode = 1; },
);

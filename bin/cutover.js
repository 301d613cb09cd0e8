#!/usr/bin/env node
// Cutover runs its TypeScript sources directly: Node.js >= 22.19 strips types natively
// (erasable syntax only, checked by `tsc --erasableSyntaxOnly`), so there is no build step.
import { main } from '../src/cli/main.ts';

main(process.argv).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.stack : err); process.exitCode = 1; },
);

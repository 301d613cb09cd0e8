/**
 * Node's own HTTP parser binding (llhttp, `node:_http_common` HTTPParser): the parser behind
 * `node:http`, used by the router for upstream responses (upstream-pool.ts) and for client
 * requests on plain listeners (client-http1.ts), so both sides frame messages exactly as
 * `node:http` does. Nothing in the router parses HTTP by hand.
 *
 * Owns: loading the binding and checking it has what we use. Must never: be lenient (callers
 * initialize it with `kLenientNone`).
 */

/** The slice of Node's `HTTPParser` binding the router uses (the same one `node:http` drives). */
export interface NodeHttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [callback: number]: unknown;
}

export interface NodeHttpParserClass {
  new (): NodeHttpParser;
  readonly REQUEST: number;
  readonly RESPONSE: number;
  readonly kOnMessageBegin: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kLenientNone: number;
}

function load(): { HTTPParser: NodeHttpParserClass; methods: readonly string[] } {
  const common = process.getBuiltinModule('_http_common') as { HTTPParser?: NodeHttpParserClass; methods?: readonly string[] } | undefined;
  const P = common?.HTTPParser;
  const ok = typeof P === 'function' && typeof P.RESPONSE === 'number' && typeof P.REQUEST === 'number' &&
    [P.kOnMessageBegin, P.kOnHeaders, P.kOnHeadersComplete, P.kOnBody, P.kOnMessageComplete].every((k) => typeof k === 'number') &&
    typeof P.prototype.execute === 'function' && typeof P.prototype.finish === 'function' && Array.isArray(common?.methods);
  if (!ok) throw new Error(`this Node.js (${process.version}) does not expose the HTTP parser Cutover's router uses (node:_http_common HTTPParser); use Node.js >= 22.19`);
  return { HTTPParser: P, methods: common!.methods! };
}

const loaded = load();
export const HTTPParser: NodeHttpParserClass = loaded.HTTPParser;
/** Request methods by the index the parser reports them with (llhttp's method table). */
export const HTTP_METHODS: readonly string[] = loaded.methods;

/**
 * What an upstream failure means for the client: status, short text, whether the request may be
 * retried on another instance and whether the instance is reported to health (passive ejection).
 *
 * Owns: the mapping error code → answer. Must never: put internals (addresses, stack traces,
 * error messages) into the text; the instance id is the only detail a client sees.
 */
import type { ProxyErrorKind } from './request-stats.ts';
import { UPSTREAM_ERRORS } from './upstream-pool.ts';

export interface UpstreamFailure {
  status: 502 | 504;
  kind: ProxyErrorKind;
  /** Completes "upstream <id> …". */
  text: string;
  /** Nothing reached the application: safe to retry an idempotent bodiless request elsewhere. */
  retryable: boolean;
  /** A connection-level failure worth reporting to health. */
  report: boolean;
}

const REFUSED: UpstreamFailure = { status: 502, kind: 'connect', text: 'refused the connection', retryable: true, report: true };
const UNREACHABLE: UpstreamFailure = { status: 502, kind: 'connect', text: 'could not be reached', retryable: true, report: true };
const CONNECT_TIMEOUT: UpstreamFailure = { status: 504, kind: 'timeout', text: 'did not accept the connection in time', retryable: true, report: true };
// Not reported to health: a reset on a reused keep-alive connection is the benign race of an
// upstream closing an idle socket as a request is sent (RFC 9112 §9.3.1); a dead instance shows
// up as ECONNREFUSED on the next connect and in active checks. Ejecting on it could empty a colour.
const RESET: UpstreamFailure = { status: 502, kind: 'reset', text: 'closed the connection before answering', retryable: true, report: false };
const HEADERS_TIMEOUT: UpstreamFailure = { status: 504, kind: 'timeout', text: 'did not answer in time', retryable: false, report: false };
const GONE: UpstreamFailure = { status: 502, kind: 'connect', text: 'is no longer available', retryable: true, report: false };
// The application's response head is larger than router.maxHeaderSize: refuse to relay it.
const HEAD_TOO_LARGE: UpstreamFailure = { status: 502, kind: 'reset', text: 'sent a response head larger than the limit', retryable: false, report: false };
const OTHER: UpstreamFailure = { status: 502, kind: 'reset', text: 'sent an invalid response', retryable: false, report: false };

/** Classifies an error seen before any response byte was forwarded. */
export function classifyUpstreamError(err: unknown): UpstreamFailure {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return REFUSED;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return UNREACHABLE;
    case UPSTREAM_ERRORS.connectTimeout:
    case 'ETIMEDOUT':
      return CONNECT_TIMEOUT;
    case 'ECONNRESET':
    case 'EPIPE':
    case UPSTREAM_ERRORS.closed:
      return RESET;
    case UPSTREAM_ERRORS.headersTimeout:
      return HEADERS_TIMEOUT;
    case UPSTREAM_ERRORS.headersOverflow:
      return HEAD_TOO_LARGE;
    case UPSTREAM_ERRORS.poolClosed:
      // The pool was closed under us (target left the table): nothing was sent.
      return GONE;
    default:
      return OTHER;
  }
}

export const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** `502 Bad Gateway: upstream blue-0 refused the connection\n` */
export function failureBody(status: number, detail: string): string {
  return `${status} ${STATUS_TEXT[status] ?? 'Error'}: ${detail}\n`;
}

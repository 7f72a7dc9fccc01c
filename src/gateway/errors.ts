/**
 * The gateway's one error table: every error code it answers with is
 * declared here once, with its HTTP status. Handlers throw MercatoErrors
 * (any module's) or GatewayErrors; the error handler turns them into
 * `{ "error": { "code", "message" } }` and takes the status from this table
 * (a MercatoError whose code is not listed keeps its own status).
 *
 * The codes in the second group are raised by other parts (the market, the
 * blob store, the ledger routes) and pass through the gateway unchanged;
 * they are listed so that clients have one place to look.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { isMercatoError, MercatoError } from '../errors.js'
import { logger } from '../logger.js'

const log = logger('gateway')

export const GATEWAY_ERRORS = {
  // raised by the gateway itself
  'invalid-request': { status: 400, message: 'The request is malformed' },
  'invalid-json': { status: 400, message: 'The body is not valid JSON' },
  unauthorized: { status: 401, message: 'A valid bearer token is required' },
  'foreign-origin': { status: 403, message: 'Cross-site requests are refused' },
  'foreign-host': { status: 403, message: 'The Host header does not name this gateway' },
  'not-found': { status: 404, message: 'No such resource' },
  'method-not-allowed': { status: 405, message: 'Method not allowed on this route' },
  'request-timeout': { status: 408, message: 'The request headers did not arrive in time' },
  conflict: { status: 409, message: 'The resource is not in a state that allows this' },
  'payload-too-large': { status: 413, message: 'The body exceeds the size limit' },
  'unsupported-media-type': { status: 415, message: 'Unsupported content type' },
  'range-not-satisfiable': { status: 416, message: 'The requested range lies beyond the end of the file' },
  'headers-too-large': { status: 431, message: 'The request headers exceed the size limit' },
  internal: { status: 500, message: 'Internal error' },
  unavailable: { status: 503, message: 'The node is not ready for this' },
  // raised by the market, blob store and ledger, answered as is
  'invalid-spec': { status: 400, message: 'The job spec is invalid (the message names the field)' },
  'unknown-module': { status: 400, message: 'The job names a module that is not in the blob store' },
  'unknown-input': { status: 400, message: 'The job names an input blob that is not in the blob store (upload it first: POST /v1/blobs)' },
  'offer-too-large': { status: 400, message: 'The job offer exceeds the gossip size limit' },
  'queue-full': { status: 429, message: 'The node holds as many queued jobs as it may (auction.maxQueuedJobs); retry later, or submit with queueTimeoutMs 0' },
  'empty-blob': { status: 400, message: 'A blob must not be empty' },
  'blob-too-large': { status: 413, message: 'The blob exceeds the blob size limit' },
  'invalid-peer': { status: 400, message: 'Not a PeerId or multiaddr' },
  'invalid-input': { status: 400, message: 'The input is invalid' },
  'job-not-found': { status: 404, message: 'No such job' },
  'blob-not-found': { status: 404, message: 'No such blob' },
  'block-mismatch': { status: 502, message: 'A peer sent a block that does not match its CID' },
  'invalid-blob': { status: 400, message: 'The CID does not name a UnixFS file this node reads (codec, hash, shape)' },
  timeout: { status: 504, message: 'The operation timed out' }
} as const

export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS

export function isGatewayErrorCode (code: string): code is GatewayErrorCode {
  return Object.hasOwn(GATEWAY_ERRORS, code)
}

/** The status for an error code: the table's, or `fallback` for a code it does not list. */
export function statusOf (code: string, fallback: number): number {
  return isGatewayErrorCode(code) ? GATEWAY_ERRORS[code].status : fallback
}

export class GatewayError extends MercatoError {
  constructor (code: GatewayErrorCode, message?: string) {
    const def = GATEWAY_ERRORS[code]
    super(message ?? def.message, { code, status: def.status, name: 'GatewayError' })
  }
}

/**
 * The one error handler: every error a route throws becomes `{ error: { code, message } }` with the
 * status from the table above. Route plugins that may run on their own (tests) install it too.
 */
export function gatewayErrorHandler (err: any, req: FastifyRequest, reply: FastifyReply): void {
  let status = 500
  let code = 'internal'
  let message: string = GATEWAY_ERRORS.internal.message
  if (isMercatoError(err)) {
    code = err.code; status = statusOf(err.code, err.status); message = err.message
  } else if (err?.validation != null) {
    code = 'invalid-request'; status = 400; message = err.message
  } else if (err?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    code = 'payload-too-large'; status = 413; message = GATEWAY_ERRORS['payload-too-large'].message
  } else if (err?.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    code = 'unsupported-media-type'; status = 415; message = err.message
  } else if (err?.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (err instanceof SyntaxError && (err as any).statusCode === 400)) {
    code = 'invalid-json'; status = 400; message = err.message
  } else if (err?.name === 'AbortError' || err?.name === 'TimeoutError') {
    code = 'timeout'; status = 504; message = String(err.message)
  } else if (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    code = err.statusCode === 413 ? 'payload-too-large' : err.statusCode === 415 ? 'unsupported-media-type' : 'invalid-request'
    status = statusOf(code, 400); message = String(err.message)
  }
  if (status >= 500) log.error({ err, url: req.url }, 'gateway error')
  void reply.status(status).send({ error: { code, message } })
}

/**
 * Requests Node's HTTP parser refuses before fastify sees them (a bad header line, a NUL in the
 * path, a bad or doubled Content-Length, Content-Length with Transfer-Encoding, bad chunk framing,
 * headers past Node's size limit, headers that did not arrive within its headersTimeout): answered
 * in the same `{ error: { code, message } }` shape as every other error, then the connection is
 * closed (the parser cannot go on on it). Logged at debug: a client's mistake, not the node's.
 */
export function gatewayClientErrorHandler (err: Error & { code?: string, reason?: string }, socket: Duplex): void {
  // a reset connection is gone already; nothing to answer
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const code: GatewayErrorCode = err.code === 'HPE_HEADER_OVERFLOW'
    ? 'headers-too-large'
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request-timeout' : 'invalid-request'
  const status = GATEWAY_ERRORS[code].status
  const message = code === 'invalid-request' ? `the HTTP request is malformed: ${err.reason ?? err.message}` : GATEWAY_ERRORS[code].message
  log.debug({ code: err.code, reason: err.reason }, 'gateway: malformed HTTP request')
  // as Node's own handler: not after an answer to this request has started on the socket
  if (socket.writable && (socket as any)._httpMessage?.headersSent !== true) {
    const body = JSON.stringify({ error: { code, message } })
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}

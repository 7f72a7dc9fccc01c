/**
 * The gateway's one error table: every error it answers with is declared
 * here once, with its code and HTTP status. Handlers throw MercatoErrors
 * (any module's) or these; the error handler turns them into
 * `{ "error": { "code", "message" } }`.
 */
import { MercatoError } from '../errors.js'

export const GATEWAY_ERRORS = {
  'invalid-request': { status: 400, message: 'The request is malformed' },
  'invalid-json': { status: 400, message: 'The body is not valid JSON' },
  unauthorized: { status: 401, message: 'A valid bearer token is required' },
  'foreign-origin': { status: 403, message: 'Cross-site requests are refused' },
  'foreign-host': { status: 403, message: 'The Host header does not name this gateway' },
  'not-found': { status: 404, message: 'No such resource' },
  'method-not-allowed': { status: 405, message: 'Method not allowed on this route' },
  conflict: { status: 409, message: 'The resource is not in a state that allows this' },
  'payload-too-large': { status: 413, message: 'The body exceeds the size limit' },
  'unsupported-media-type': { status: 415, message: 'Unsupported content type' },
  unavailable: { status: 503, message: 'The node is not ready for this' },
  internal: { status: 500, message: 'Internal error' }
} as const

export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS

export class GatewayError extends MercatoError {
  constructor (code: GatewayErrorCode, message?: string) {
    const def = GATEWAY_ERRORS[code]
    super(message ?? def.message, { code, status: def.status, name: 'GatewayError' })
  }
}

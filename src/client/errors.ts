/**
 * The client's named errors. Match `err.name` or `err.code`, never the
 * message.
 */

/** The gateway answered with an error: `{ "error": { "code", "message" } }`. */
export class MercatoApiError extends Error {
  /** the gateway's error code, e.g. `job-not-found`, `conflict`, `unauthorized` */
  readonly code: string
  /** the HTTP status */
  readonly status: number

  constructor (message: string, code: string, status: number) {
    super(message)
    this.name = 'MercatoApiError'
    this.code = code
    this.status = status
  }
}

/** No gateway answered at the URL (connection refused, unknown host, timeout). */
export class MercatoConnectionError extends Error {
  readonly code = 'unreachable'
  readonly url: string

  constructor (url: string, cause?: unknown) {
    super(`no Mercato node at ${url}`, cause !== undefined ? { cause } : undefined)
    this.name = 'MercatoConnectionError'
    this.url = url
  }
}

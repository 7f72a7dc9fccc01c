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

/**
 * An event stream went silent: nothing (not even the gateway's keep-alive comment, sent every 15 s)
 * arrived for `idleMs`. The connection is closed; `wait()` asks the node and reconnects.
 */
export class StreamIdleError extends Error {
  readonly code = 'stream-idle'
  readonly idleMs: number

  constructor (idleMs: number) {
    super(`nothing arrived on the event stream for ${idleMs} ms (not even a keep-alive)`)
    this.name = 'StreamIdleError'
    this.idleMs = idleMs
  }
}

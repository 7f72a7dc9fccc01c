/**
 * Named errors. Callers match `err.name` or `err.code`, never the message.
 * `status` is the HTTP status the gateway answers with; `retryable` says
 * whether trying again later can help.
 */
export class MercatoError extends Error {
  readonly code: string
  readonly status: number
  readonly retryable: boolean

  constructor (message: string, opts: { code: string, status?: number, retryable?: boolean, cause?: unknown, name?: string }) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined)
    this.name = opts.name ?? 'MercatoError'
    this.code = opts.code
    this.status = opts.status ?? 500
    this.retryable = opts.retryable ?? false
  }
}

/** Bad input from a user or the API (HTTP 400). */
export class InvalidInputError extends MercatoError {
  constructor (message: string, code = 'invalid-input') {
    super(message, { code, status: 400, name: 'InvalidInputError' })
  }
}

/** Something named does not exist (HTTP 404). */
export class NotFoundError extends MercatoError {
  constructor (message: string, code = 'not-found') {
    super(message, { code, status: 404, name: 'NotFoundError' })
  }
}

/** A message from the network failed its size, schema or signature check. */
export class InvalidMessageError extends MercatoError {
  constructor (message: string, code = 'invalid-message') {
    super(message, { code, status: 400, name: 'InvalidMessageError' })
  }
}

/** A configuration value is wrong; the CLI prints one line and exits 2. */
export class ConfigError extends MercatoError {
  readonly key: string
  constructor (key: string, message: string) {
    super(message, { code: 'invalid-config', status: 500, name: 'ConfigError' })
    this.key = key
  }
}

/** An operation was aborted through its AbortSignal (HTTP 499). The one abort error; parts may name it their way. */
export class AbortError extends MercatoError {
  constructor (message = 'Aborted', name = 'AbortError') {
    super(message, { code: 'aborted', status: 499, name })
  }
}

/** A user mistake on the command line: the CLI prints one line and exits 2. */
export class UsageError extends MercatoError {
  constructor (message: string) {
    super(message, { code: 'usage', status: 400, name: 'UsageError' })
  }
}

/** An operation does not fit the job's current state (HTTP 409): cancel a finished job, read a missing result. */
export class JobStateError extends MercatoError {
  constructor (message: string) {
    super(message, { code: 'conflict', status: 409, name: 'JobStateError' })
  }
}

/** The requester's queue holds `auction.maxQueuedJobs` jobs: a job that may queue is refused (HTTP 429); try again later, or submit with queueTimeoutMs 0. */
export class QueueFullError extends MercatoError {
  constructor (message: string) {
    super(message, { code: 'queue-full', status: 429, retryable: true, name: 'QueueFullError' })
  }
}

/** A requester closed a provider's bid stream: garbage, a forged answer, or idle. */
export class BidStreamClosedError extends MercatoError {
  constructor (message: string) {
    super(message, { code: 'bid-stream-closed', status: 400, name: 'BidStreamClosedError' })
  }
}

export function isMercatoError (err: unknown): err is MercatoError {
  return err instanceof MercatoError
}

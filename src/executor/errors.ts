/**
 * Errors the executor THROWS (as opposed to job failures, which resolve with
 * `result.error`). Callers match `err.code` (or `err.name`), never the message.
 * A `queue-full` or `unsupported-engine` becomes a provider's decline reason.
 */
import { AbortError, MercatoError } from '../errors.js'

/** The module is not valid wasm, does not match its CID, or cannot be sandboxed (shared / 64-bit memory, foreign imports). */
export class InvalidModuleError extends MercatoError {
  constructor (message: string, cause?: unknown) {
    super(message, { code: 'invalid-module', status: 400, name: 'InvalidModuleError', cause })
  }
}

/** The job names an engine this executor does not run. */
export class UnsupportedEngineError extends MercatoError {
  constructor (message: string) {
    super(message, { code: 'unsupported-engine', status: 400, name: 'UnsupportedEngineError' })
  }
}

/** Every worker is busy and the waiting queue is full; retrying later can help. */
export class QueueFullError extends MercatoError {
  constructor (message = 'Executor queue is full') {
    super(message, { code: 'queue-full', status: 503, retryable: true, name: 'QueueFullError' })
  }
}

/** The caller's AbortSignal fired before the job finished (the guest was stopped): the shared {@link AbortError}, named as the executor's API has always named it. */
export class AbortedError extends AbortError {
  constructor (message = 'Job aborted') {
    super(message, 'AbortedError')
  }
}

/** The executor is not started (or was stopped while the job waited). */
export class ExecutorStoppedError extends MercatoError {
  constructor (message = 'Executor is not running') {
    super(message, { code: 'executor-stopped', status: 503, retryable: true, name: 'ExecutorStoppedError' })
  }
}

/** The job's input files are not usable: a bad path, a duplicate, a file that cannot be opened (`input-unavailable`). */
export class InvalidInputsError extends MercatoError {
  constructor (message: string, cause?: unknown) {
    super(message, { code: 'invalid-inputs', status: 400, name: 'InvalidInputsError', cause })
  }
}

/**
 * The provider could not keep a job's output files (its disk is full, the job's staging folder
 * went away): nothing to do with the job, so no result; retrying elsewhere helps.
 */
export class OutputStorageError extends MercatoError {
  constructor (message: string, cause?: unknown) {
    super(message, { code: 'output-storage', status: 507, retryable: true, name: 'OutputStorageError', cause })
  }
}

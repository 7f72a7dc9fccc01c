/**
 * Errors of the Slurm backend. Both are `retryable`: the job itself is not at
 * fault, so the provider drops the award and the requester fails over.
 */
import { MercatoError } from '../../errors.js'

/**
 * The Slurm job ended without a result: FAILED, CANCELLED (scancel by someone
 * else), PREEMPTED, NODE_FAIL, TIMEOUT, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE,
 * vanished from the controller, or pending past `maxPendingMs`.
 */
export class SlurmJobFailedError extends MercatoError {
  /** Slurm's state word (or `VANISHED`, `PENDING_TOO_LONG`, `NO_RESULT`). */
  readonly state: string
  /** The Slurm job id. */
  readonly slurmJobId: string
  constructor (slurmJobId: string, state: string, message: string) {
    super(message, { code: 'slurm-job-failed', status: 502, retryable: true, name: 'SlurmJobFailedError' })
    this.state = state
    this.slurmJobId = slurmJobId
  }
}

/** A Slurm command (sbatch, squeue, sinfo, scancel) could not be run or failed. */
export class SlurmUnavailableError extends MercatoError {
  constructor (message: string, cause?: unknown) {
    super(message, { code: 'slurm-unavailable', status: 503, retryable: true, name: 'SlurmUnavailableError', cause })
  }
}

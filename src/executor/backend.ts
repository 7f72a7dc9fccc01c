/**
 * Executor backends: where a provider's won jobs actually run.
 *
 * One interface, several places to run: `local` (this machine's sandbox pool,
 * {@link LocalBackend}) and `slurm` (a cluster's scheduler, see
 * `./slurm/index.ts`), so that a Kubernetes Jobs backend can follow the same
 * shape. Every backend runs the *same* sandbox (the local pool on this
 * machine, `mercato exec-staged` on a compute node), so limits, determinism
 * and the result hash do not depend on the backend.
 *
 * A backend:
 * - `run(job, { signal, onState })`: runs one job; the AbortSignal cancels it
 *   (a queued job is dropped, a running one is killed or `scancel`led) and the
 *   promise rejects with AbortedError. `onState` reports `queued` (waiting for
 *   the backend, e.g. PENDING in Slurm) and `running`; the provider turns
 *   them into its heartbeats. `onOutput` streams what the job writes while it
 *   runs (the provider's live logs); a backend that cannot see a running job's
 *   output (Slurm: it lands in a file on the compute node) sends none.
 * - `capacity()`: how many jobs this provider may have in flight right now
 *   (`slots`, ours included) and how many it has (`inFlight`). The provider's
 *   slots, free-slot check and surge price follow it.
 * - events: `state` ({@link BackendStateEvent}) as jobs move, and `capacity`
 *   when the backend learns new capacity figures.
 * - Job-caused failures resolve with `result.error` (as the local pool does);
 *   refusals throw the executor's named errors; a job the backend lost
 *   (a Slurm job that failed, was preempted or cancelled behind our back)
 *   throws a named error with `retryable: true`, on which the provider drops
 *   the award so the requester fails over.
 */
import { EventEmitter } from 'node:events'
import type { Engine, ExecJob, ExecResult, Executor, ExecutorStats, OutputListener } from './index.js'

export type BackendName = 'local' | 'slurm'

/** What a job is doing in the backend: waiting for resources, or running. */
export type BackendJobState = 'queued' | 'running'

export interface BackendRunOptions {
  signal?: AbortSignal
  /** Called as the job moves (at least once with `running` before it resolves, unless it failed first). */
  onState?: (state: BackendJobState) => void
  /** Live output while the job runs (the local pool reports it; the Slurm backend reports none). */
  onOutput?: OutputListener
}

export interface BackendCapacity {
  /** Jobs this provider may have in flight now (its own included). */
  slots: number
  /** Jobs this provider has in the backend now (queued or running). */
  inFlight: number
  /** How long a job takes to start once handed over (ms, recent average): a cluster's queue and node start-up; 0 for the pool. */
  startMs: number
  /** Where the figure comes from: the pool size, or the cluster's free CPUs at `updatedAt`. */
  source: 'pool' | 'cluster'
  /** ms since epoch when the figure was last learnt (pool: now). */
  updatedAt: number
}

export interface BackendStateEvent {
  jobId: string
  state: BackendJobState | 'done' | 'failed' | 'cancelled'
  /** The backend's own name for the job (Slurm job id). */
  ref?: string
  /** The backend's own state word (Slurm: PENDING, RUNNING, PREEMPTED, ...). */
  detail?: string
}

export interface BackendEvents {
  state: [BackendStateEvent]
  capacity: [BackendCapacity]
}

export interface ExecutorBackend extends Executor {
  readonly name: BackendName
  readonly events: EventEmitter<BackendEvents>
  run (job: ExecJob, opts?: BackendRunOptions): Promise<ExecResult>
  capacity (): BackendCapacity
}

export function isBackend (e: Executor): e is ExecutorBackend {
  return typeof (e as Partial<ExecutorBackend>).capacity === 'function' && (e as Partial<ExecutorBackend>).events instanceof EventEmitter
}

/** A backend as is, or a plain executor (the local pool) wrapped as the local backend. */
export function asBackend (e: Executor): ExecutorBackend {
  return isBackend(e) ? e : new LocalBackend(e)
}

/**
 * The local backend: this machine's sandbox pool (or its isolated variant).
 * A job counts as running from the moment it is handed to the pool (the
 * pool's own queue is short and local).
 */
export class LocalBackend implements ExecutorBackend {
  readonly name = 'local'
  readonly events = new EventEmitter<BackendEvents>()
  private readonly executor: Executor
  private inFlight = 0

  constructor (executor: Executor) {
    this.executor = executor
  }

  async run (job: ExecJob, opts: BackendRunOptions = {}): Promise<ExecResult> {
    this.inFlight++
    try {
      opts.onState?.('running')
      this.events.emit('state', { jobId: job.id, state: 'running' })
      const result = await this.executor.run(job, { signal: opts.signal, onOutput: opts.onOutput })
      this.events.emit('state', { jobId: job.id, state: result.error != null ? 'failed' : 'done', detail: result.error?.name })
      return result
    } catch (err: any) {
      this.events.emit('state', { jobId: job.id, state: err?.code === 'aborted' ? 'cancelled' : 'failed', detail: err?.code })
      throw err
    } finally {
      this.inFlight--
    }
  }

  get readsInPlace (): boolean { return this.executor.readsInPlace === true }

  capacity (): BackendCapacity {
    return { slots: this.executor.stats().poolSize, inFlight: this.inFlight, startMs: 0, source: 'pool', updatedAt: Date.now() }
  }

  stats (): ExecutorStats { return this.executor.stats() }
  engines (): Engine[] { return this.executor.engines() }
  async start (): Promise<void> { await this.executor.start() }
  async stop (): Promise<void> { await this.executor.stop() }
}

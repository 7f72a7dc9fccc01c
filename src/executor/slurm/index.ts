/**
 * The Slurm backend: a provider in front of a cluster hands each won job to
 * the cluster's scheduler instead of running it itself.
 *
 * For each job:
 * 1. **Stage.** The job (clamped to the provider's ceilings) and its module
 *    are written to `<stageDir>/<job>.<random>/` (see `../staged.ts`); the
 *    stage dir must be shared with the compute nodes (same path).
 * 2. **Submit.** `sbatch --parsable --no-requeue` a two-line script that runs
 *    `mercato exec-staged <dir>` (this package's own bin, through
 *    {@link mercatoCommand}, with this Node) on the compute node: the same
 *    sandbox as the local pool, so limits, determinism and the result hash
 *    are those of a local run. One CPU, the job's memory cap plus
 *    `memOverheadMb`, a time limit of the job's plus `startAllowanceMs`.
 * 3. **Watch.** `started` and `result.cbor` in the stage dir are checked every
 *    few ms (the fast path); `squeue` is read every `pollMs` for all our jobs
 *    at once: PENDING → `queued`, RUNNING → `running` (the provider's
 *    heartbeats say so). A job that ends without a result (FAILED, CANCELLED
 *    by someone else, PREEMPTED, NODE_FAIL, TIMEOUT, ...), vanishes from the
 *    controller, or stays PENDING past `maxPendingMs` rejects with
 *    {@link SlurmJobFailedError} (`retryable`): the provider drops the award
 *    and the requester fails over.
 * 4. **Withdraw.** The run's AbortSignal `scancel`s the job.
 *
 * Capacity: every `pollMs`, free CPUs = idle CPUs of our partition − CPUs
 * wanted by anyone's pending jobs; the provider may have in flight what it
 * had then plus that (jobs it submitted since use it up, jobs that ended
 * since give it back), capped by `maxJobs`. So the provider bids only while
 * the cluster has room, and its advertised slots never exceed the cluster.
 */
import { EventEmitter } from 'node:events'
import { access, copyFile, mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { constants } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { basename, join, resolve } from 'node:path'
import { logger } from '../../logger.js'
import { AbortedError, ExecutorStoppedError, InvalidInputsError, OutputStorageError, UnsupportedEngineError } from '../errors.js'
import { clampLimits } from '../pool.js'
import { mercatoCommand } from '../command.js'
import { readStagedResult, stageJob, STAGED_RESULT_FILE, STAGED_STARTED_FILE } from '../staged.js'
import type { BackendCapacity, BackendEvents, BackendJobState, BackendRunOptions, ExecutorBackend } from '../backend.js'
import type { Engine, ExecJob, ExecResult, ExecutorInit, ExecutorStats } from '../index.js'
import { SlurmCommands, type JobState } from './commands.js'
import { SlurmJobFailedError, SlurmUnavailableError } from './errors.js'
import * as C from './constants.js'

export { SlurmJobFailedError, SlurmUnavailableError } from './errors.js'
export { SlurmCommands } from './commands.js'

const log = logger('executor:slurm')

/** A Slurm job with a result that Slurm still shows running after this long stops counting against capacity. */
const LINGER_MAX_MS = 60_000

export interface SlurmInit {
  /** A directory the compute nodes see at the same path (jobs are staged there). */
  stageDir: string
  /** Partition to submit to and to count free CPUs in ('' = the cluster's default). */
  partition: string
  /** `--account` for sbatch ('' = none). */
  account: string
  /** SLURM_CONF for the Slurm commands ('' = the system's). */
  conf: string
  /** Most jobs in flight on the cluster at once (0 = as many as it has free CPUs). */
  maxJobs: number
  pollMs: number
  maxPendingMs: number
  memOverheadMb: number
  startAllowanceMs: number
  /** Extra sbatch arguments (e.g. ["--qos=low"]). */
  sbatchArgs: string[]
  /** The command that runs `mercato` on a compute node ([] = this Node and this package's bin). */
  command: string[]
  /** Keep stage dirs after the job (debugging). */
  keepStaged: boolean
}

export const DEFAULT_SLURM_INIT: SlurmInit = {
  stageDir: '',
  partition: '',
  account: '',
  conf: '',
  maxJobs: 0,
  pollMs: C.POLL_MS,
  maxPendingMs: C.MAX_PENDING_MS,
  memOverheadMb: C.MEM_OVERHEAD_MB,
  startAllowanceMs: C.START_ALLOWANCE_MS,
  sbatchArgs: [],
  command: [],
  keepStaged: false
}

interface Tracked {
  job: ExecJob
  dir: string
  outputBytes: number
  slurmId?: string
  state: BackendJobState
  slurmState?: string
  submittedAt: number
  misses: number
  /** set when Slurm says the job ended; the result may still be on its way */
  endedAt?: number
  endedState?: string
  /** the look at the stage dir under way, if any */
  checking?: Promise<void>
  settled: boolean
  resolve: (r: ExecResult) => void
  reject: (e: unknown) => void
  onState?: (s: BackendJobState) => void
}

/** Quote for a POSIX shell script. */
function sh (s: string): string { return `'${s.replace(/'/g, "'\\''")}'` }

function safeName (id: string): string { return id.replace(/[^A-Za-z0-9_-]/g, '_').slice(-48) }

export class SlurmBackend implements ExecutorBackend {
  readonly name = 'slurm'
  readonly events = new EventEmitter<BackendEvents>()
  private readonly init: SlurmInit
  private readonly exec: ExecutorInit
  private readonly slurm: SlurmCommands
  private readonly stageDir: string
  private readonly jobs = new Set<Tracked>()
  /**
   * Slurm jobs whose result we have but that Slurm still runs (the sandbox process exiting): they
   * still hold their CPU, so capacity counts them until squeue says they ended.
   */
  private readonly lingering = new Map<string, number>()
  private running = false
  private pollTimer?: NodeJS.Timeout
  private resultTimer?: NodeJS.Timeout
  private polling = false
  /** free CPUs and our jobs in flight at the last capacity read */
  private free0 = 0
  private inFlight0 = 0
  private total = 0
  private updatedAt = 0
  private completed = 0
  private failed = 0
  /** recent average of submit → sandbox started (ms) */
  private startMs = 0

  constructor (init: Partial<SlurmInit>, exec: ExecutorInit) {
    this.init = { ...DEFAULT_SLURM_INIT }
    for (const [k, v] of Object.entries(init)) if (v !== undefined) (this.init as unknown as Record<string, unknown>)[k] = v
    if (this.init.stageDir === '') throw new SlurmUnavailableError('executor.slurm.stageDir is required: a directory the compute nodes share')
    this.stageDir = resolve(this.init.stageDir)
    this.exec = exec
    this.slurm = new SlurmCommands({ conf: this.init.conf, partition: this.init.partition })
  }

  engines (): Engine[] { return [...this.exec.engines] }

  capacity (): BackendCapacity {
    const inFlight = this.jobs.size + this.lingering.size
    // never more than the partition has, whatever a read that raced with a job's end said
    let slots = Math.max(inFlight, Math.min(this.total, this.free0 + this.inFlight0))
    if (this.init.maxJobs > 0) slots = Math.min(slots, this.init.maxJobs)
    return { slots, inFlight, startMs: Math.round(this.startMs), source: 'cluster', updatedAt: this.updatedAt }
  }

  stats (): ExecutorStats {
    let busy = 0
    for (const t of this.jobs) if (t.state === 'running') busy++
    return { poolSize: this.capacity().slots, busy, queued: this.jobs.size - busy, completed: this.completed, failed: this.failed }
  }

  /** Total CPUs of our partition at the last read. */
  clusterCpus (): number { return this.total }

  async start (): Promise<void> {
    if (this.running) return
    await mkdir(this.stageDir, { recursive: true, mode: 0o700 })
    // a cluster we cannot even ask is a configuration error: say so at start. A named slurm.conf
    // that is not there fails at once (sinfo would retry it for 60 s before giving up)
    if (this.init.conf !== '') {
      await access(this.init.conf, constants.R_OK).catch((err: NodeJS.ErrnoException) => {
        throw new SlurmUnavailableError(`executor.slurm.conf ${this.init.conf}: ${err.code === 'ENOENT' ? 'no such file' : 'not readable'}; sinfo and squeue need it to reach the cluster`, err)
      })
    }
    await this.readCapacity()
    this.running = true
    this.schedule()
    log.info({ stageDir: this.stageDir, partition: this.init.partition || '(default)', cpus: this.total, free: this.free0 }, 'slurm backend started')
  }

  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.pollTimer)
    clearTimeout(this.resultTimer)
    const jobs = [...this.jobs]
    this.jobs.clear()
    this.lingering.clear()
    await Promise.all(jobs.map(async t => {
      this.settle(t, new ExecutorStoppedError('executor stopped'))
      if (t.slurmId != null) await this.slurm.scancel(t.slurmId).catch(() => {})
      await this.cleanup(t)
    }))
  }

  async run (job: ExecJob, opts: BackendRunOptions = {}): Promise<ExecResult> {
    const { signal } = opts
    if (signal?.aborted === true) throw new AbortedError()
    if (!this.running) throw new ExecutorStoppedError()
    if (job == null || typeof job.id !== 'string') throw new TypeError('job.id must be a string')
    if (!this.exec.engines.includes(job.engine)) throw new UnsupportedEngineError(`engine ${String(job.engine)} is not supported here (engines: ${this.exec.engines.join(', ')})`)
    // input files are not staged to compute nodes (yet): providers on Slurm decline such jobs (inputs-unsupported)
    if (job.inputs != null && job.inputs.length > 0) throw new InvalidInputsError('the Slurm backend does not run jobs with input files')
    const limits = clampLimits(job.limits, this.exec)
    const dir = join(this.stageDir, `${safeName(job.id)}.${randomBytes(6).toString('hex')}`)
    let resolveP!: (r: ExecResult) => void
    let rejectP!: (e: unknown) => void
    const promise = new Promise<ExecResult>((resolve, reject) => { resolveP = resolve; rejectP = reject })
    promise.catch(() => {}) // awaited below; it may settle (abort, failed submit) before that
    const t: Tracked = { job, dir, outputBytes: limits.outputBytes, state: 'queued', submittedAt: Date.now(), misses: 0, settled: false, resolve: resolveP, reject: rejectP, onState: opts.onState }
    this.jobs.add(t)
    const onAbort = (): void => {
      if (t.settled) return
      this.settle(t, new AbortedError('job aborted (Slurm job cancelled)'))
      void this.cancel(t)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await stageJob(dir, { ...job, limits, seed: job.seed ?? job.id }, this.exec.isolation)
      await writeFile(join(dir, 'job.sh'), this.script(dir), { mode: 0o700 })
      if (t.settled) { await this.cleanup(t); return await promise }
      const args = [
        '--no-requeue',
        `--job-name=mercato-${safeName(job.id).slice(-12)}`,
        `--comment=mercato job ${job.id.slice(0, 128)}`,
        `--chdir=${dir}`,
        `--output=${join(dir, 'slurm.out')}`,
        '--ntasks=1',
        '--cpus-per-task=1',
        `--mem=${limits.memoryMb + this.init.memOverheadMb}M`,
        `--time=${Math.ceil((limits.timeoutMs + this.init.startAllowanceMs) / 60_000)}`,
        '--export=NONE',
        ...(this.init.account !== '' ? [`--account=${this.init.account}`] : []),
        ...this.init.sbatchArgs
      ]
      t.slurmId = await this.slurm.sbatch(join(dir, 'job.sh'), args)
      log.debug({ jobId: job.id, slurmJobId: t.slurmId }, 'submitted')
      this.events.emit('state', { jobId: job.id, state: 'queued', ref: t.slurmId, detail: 'PENDING' })
      opts.onState?.('queued')
      if (t.settled) { // aborted while sbatch ran
        this.lingering.set(t.slurmId, Date.now())
        await this.cancel(t)
      }
      else this.scheduleResults()
    } catch (err) {
      this.settle(t, err)
      await this.cleanup(t)
    }
    try {
      return await promise
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  // ---------------------------------------------------------------- internals

  /** The batch script: run this package's `mercato exec-staged` on the stage dir. */
  private script (dir: string): string {
    const cmd = this.init.command.length > 0 ? this.init.command : mercatoCommand()
    return `#!/bin/sh\n# a Mercato job, staged by a provider (see README: A provider in front of a Slurm cluster)\nexec ${[...cmd, 'exec-staged', dir].map(sh).join(' ')}\n`
  }

  private settle (t: Tracked, outcome: ExecResult | unknown, ok = false): void {
    if (t.settled) return
    t.settled = true
    this.jobs.delete(t)
    // its Slurm job may hold a CPU a little longer (the sandbox exiting, a scancel under way)
    if (t.slurmId != null && this.running) this.lingering.set(t.slurmId, Date.now())
    if (ok) {
      const r = outcome as ExecResult
      if (r.error != null) this.failed++; else this.completed++
      this.events.emit('state', { jobId: t.job.id, state: r.error != null ? 'failed' : 'done', ref: t.slurmId, detail: t.slurmState, })
      t.resolve(r)
    } else {
      this.failed++
      const err = outcome as any
      this.events.emit('state', { jobId: t.job.id, state: err?.code === 'aborted' ? 'cancelled' : 'failed', ref: t.slurmId, detail: err?.state ?? err?.code })
      t.reject(outcome)
    }
  }

  private async cancel (t: Tracked): Promise<void> {
    if (t.slurmId != null) {
      await this.slurm.scancel(t.slurmId).catch(err => { log.warn({ err, slurmJobId: t.slurmId }, 'scancel failed') })
    }
    await this.cleanup(t)
  }

  private async cleanup (t: Tracked): Promise<void> {
    if (this.init.keepStaged) return
    await rm(t.dir, { recursive: true, force: true }).catch(() => {})
  }

  private setState (t: Tracked, state: BackendJobState, detail: string): void {
    if (t.state === state || t.settled) return
    if (t.state === 'running' && state === 'queued') return
    t.state = state
    if (state === 'running') {
      const took = Date.now() - t.submittedAt
      this.startMs = this.startMs === 0 ? took : this.startMs * 0.8 + took * 0.2
    }
    this.events.emit('state', { jobId: t.job.id, state, ref: t.slurmId, detail })
    t.onState?.(state)
  }

  private schedule (): void {
    if (!this.running) return
    this.pollTimer = setTimeout(() => { void this.poll().finally(() => { this.schedule() }) }, this.init.pollMs)
    this.pollTimer.unref()
  }

  private scheduleResults (): void {
    if (!this.running || this.resultTimer != null) return
    this.resultTimer = setTimeout(() => {
      this.resultTimer = undefined
      void this.checkResults().finally(() => { if (this.jobs.size > 0) this.scheduleResults() })
    }, C.RESULT_POLL_MS)
    // kept referenced: a job in flight keeps the process alive, as one in the local pool does
  }

  /**
   * Our jobs Slurm knows of: submitted and in flight, or with a result but not yet ended. (A job
   * still being staged or submitted is not in Slurm's figures yet: it is counted against them.)
   */
  private ours (): Set<Tracked | string> {
    const out = new Set<Tracked | string>(this.lingering.keys())
    for (const t of this.jobs) if (t.slurmId != null) out.add(t)
    return out
  }

  private async readCapacity (): Promise<void> {
    const before = this.ours()
    const { idle, total, pending } = await this.slurm.freeCpus()
    this.free0 = Math.max(0, idle - pending)
    // only jobs ours for the whole read are surely reflected in it: one that ended meanwhile may
    // already show as an idle CPU, one submitted meanwhile may not show yet (counted from now on)
    let throughout = 0
    for (const j of this.ours()) if (before.has(j)) throughout++
    this.inFlight0 = throughout
    this.total = total
    this.updatedAt = Date.now()
    this.events.emit('capacity', this.capacity())
  }

  private async poll (): Promise<void> {
    if (this.polling) return
    this.polling = true
    try {
      // job states first (jobs that ended stop counting), then the free CPUs
      await this.readStates()
      await this.readCapacity().catch(err => { log.warn({ err }, 'cannot read the cluster\'s free CPUs') })
    } finally {
      this.polling = false
    }
  }

  private async readStates (): Promise<void> {
    const submitted = [...this.jobs].filter(t => t.slurmId != null)
    if (submitted.length === 0 && this.lingering.size === 0) return
    let states: Map<string, JobState>
    try {
      states = await this.slurm.states([...submitted.map(t => t.slurmId as string), ...this.lingering.keys()])
    } catch (err) {
      log.warn({ err }, 'cannot read job states from Slurm')
      return
    }
    for (const t of submitted) this.onSlurmState(t, states.get(t.slurmId as string))
    const now = Date.now()
    for (const [id, since] of this.lingering) {
      const s = states.get(id)
      // ended (or forgotten by the controller, or lingering far too long): its CPU is free again
      if (s == null || s.state === 'COMPLETED' || C.FAILED_STATES.has(s.state) || now - since > LINGER_MAX_MS) this.lingering.delete(id)
    }
  }

  private onSlurmState (t: Tracked, s: JobState | undefined): void {
    if (t.settled) return
    const now = Date.now()
    if (s == null) {
      t.misses++
      if (t.misses >= C.VANISHED_AFTER_POLLS) this.endedWithoutResult(t, 'VANISHED', 'the Slurm job vanished from the controller')
      return
    }
    t.misses = 0
    t.slurmState = s.state
    if (s.state === 'PENDING' || s.state === 'REQUEUED' || s.state === 'SUSPENDED') {
      this.setState(t, 'queued', s.state)
      if (s.state === 'PENDING' && now - t.submittedAt > this.init.maxPendingMs) {
        this.fail(t, 'PENDING_TOO_LONG', `the Slurm job was still pending after ${this.init.maxPendingMs} ms (${s.reason})`)
        void this.cancel(t)
      }
      return
    }
    if (C.RUNNING_STATES.has(s.state)) { this.setState(t, 'running', s.state); return }
    if (s.state === 'COMPLETED' || C.FAILED_STATES.has(s.state)) {
      t.endedAt ??= now
      t.endedState = s.state
      // a result written just before the end may still be on its way (shared filesystems)
      if (now - t.endedAt >= C.RESULT_GRACE_MS || s.state !== 'COMPLETED') this.endedWithoutResult(t, s.state, `the Slurm job ended ${s.state}${s.reason !== '' && s.reason !== 'None' ? ` (${s.reason})` : ''} without a result`)
    }
  }

  /** Slurm says the job is over: one last look for its result, then a named failure. */
  private endedWithoutResult (t: Tracked, state: string, message: string): void {
    void (async () => {
      // a look that started before Slurm's answer may have missed the result: wait for it, then look again
      await this.checkOne(t)
      await this.checkOne(t)
      if (t.settled) return
      this.fail(t, state, message)
      await this.cleanup(t)
    })()
  }

  private fail (t: Tracked, state: string, message: string): void {
    log.warn({ jobId: t.job.id, slurmJobId: t.slurmId, state }, message)
    this.settle(t, new SlurmJobFailedError(t.slurmId ?? '', state, `Slurm job ${t.slurmId ?? '?'}: ${message}`))
  }

  private async checkResults (): Promise<void> {
    await Promise.all([...this.jobs].map(async t => { await this.checkOne(t) }))
  }

  /** Look in the job's stage dir for `started` and `result.cbor` (one look at a time; a caller during a look shares it). */
  private async checkOne (t: Tracked): Promise<void> {
    if (t.settled || t.slurmId == null) return
    if (t.checking != null) { await t.checking; return }
    t.checking = this.look(t).finally(() => { t.checking = undefined })
    await t.checking
  }

  private async look (t: Tracked): Promise<void> {
    if (t.settled || t.slurmId == null) return
    if (t.state === 'queued') {
      const started = await stat(join(t.dir, STAGED_STARTED_FILE)).then(() => true, () => false)
      if (started) this.setState(t, 'running', 'RUNNING')
    }
    const exists = await stat(join(t.dir, STAGED_RESULT_FILE)).then(() => true, () => false)
    if (!exists || t.settled) return
    let result: ExecResult | undefined
    try {
      result = await readStagedResult(t.dir, t.job.id, t.outputBytes)
    } catch (err) {
      // a refusal of the job (invalid module, ...) or a result that fails its checks
      this.settle(t, err)
      await this.cleanup(t)
      return
    }
    if (result == null) return
    try {
      // the output files leave the stage dir (removed below) for the job's own output folder
      await takeOutputs(result, t.job.outputDir)
    } catch (err: any) {
      this.settle(t, new OutputStorageError(`cannot move the job's output files out of ${t.dir}: ${String(err?.code ?? err?.message ?? err)}`, err))
      await this.cleanup(t)
      return
    }
    this.setState(t, 'running', 'RUNNING')
    this.settle(t, result, true)
    await this.cleanup(t)
  }
}

/**
 * Move a staged result's output files into `outputDir` (made when missing; without one, a fresh
 * folder under the OS temp dir), so they outlive the stage dir: a rename, or a copy when the
 * stage dir is on another filesystem (a cluster share). The result then names the new files.
 */
async function takeOutputs (result: ExecResult, outputDir: string | undefined): Promise<void> {
  if (result.outputs == null || result.outputs.length === 0) return
  const dir = outputDir ?? await mkdtemp(join(tmpdir(), 'mercato-outputs-'))
  await mkdir(dir, { recursive: true, mode: 0o700 })
  for (const o of result.outputs) {
    const target = join(dir, basename(o.file))
    try {
      await rename(o.file, target)
    } catch (err: any) {
      if (err?.code !== 'EXDEV') throw err
      await copyFile(o.file, target)
    }
    o.file = target
  }
}

export function createSlurmBackend (init: Partial<SlurmInit>, exec: ExecutorInit): SlurmBackend {
  return new SlurmBackend(init, exec)
}

/**
 * Optional outer isolation: the whole worker pool runs in a child process
 * started through `unshare` or `bwrap`, so even a guest that escaped the
 * wasm/QuickJS sandbox and the worker would find itself in a process with
 * no network (an empty network namespace), as an unprivileged user mapped to
 * root inside a user namespace, and (bwrap) with a read-only view of the
 * filesystem, a private /tmp and its own pid namespace.
 *
 * - `isolation: "unshare"`: `unshare -Urn` (user + network namespaces).
 * - `isolation: "bwrap"`: `bwrap --unshare-all --die-with-parent
 *   --new-session --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp`, with
 *   the jobs' outputs root (`ExecutorInit.outputsRoot`; a provider's
 *   `<dataDir>/outputs`) bound read-write: the one folder it may write, where
 *   each job's output files go as the guest writes them.
 *
 * The parent talks to the child over Node's IPC channel (advanced
 * serialization, so bytes travel as Uint8Array). Refusals keep their names:
 * the child sends the error code and the parent rebuilds the same class.
 * Turn it on in the provider config: "executor": { "isolation": "bwrap" }.
 *
 * A job that brings the pool process down (an engine bug, a native
 * allocation no limit caught) fails alone with `sandbox-crash`; the other
 * jobs are sent again to a fresh pool process (see `crashed`).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { logger } from '../logger.js'
import { MercatoError } from '../errors.js'
import { AbortedError, ExecutorStoppedError, InvalidModuleError, OutputStorageError, QueueFullError, UnsupportedEngineError } from './errors.js'
import { emptyFailure } from './hash.js'
import { isWithin } from './files.js'
import type { Engine, ExecJob, ExecResult, Executor, ExecutorInit, ExecutorStats, Isolation, OutputListener, RunOptions } from './index.js'
import { FROM_SOURCES, moduleUrl, packageRoot } from '../paths.js'

const log = logger('executor:isolation')

/** How long start() waits for the isolated pool to report ready. */
const CHILD_START_TIMEOUT_MS = 30_000

export type ParentMessage =
  | { type: 'run', id: number, job: ExecJob, live: boolean }
  | { type: 'abort', id: number }
  | { type: 'probe', id: number, paths: string[] }

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'started', id: number }
  /** live output of a running job (sent only for jobs run with a listener) */
  | { type: 'output', id: number, fd: 1 | 2, data: Uint8Array }
  | { type: 'result', id: number, result: ExecResult, stats: ExecutorStats }
  | { type: 'error', id: number, error: { code: string, message: string }, stats: ExecutorStats }
  | { type: 'probe', id: number, probe: IsolationProbe }

/** What the isolated process sees of its host (tests, `mercato` diagnostics). */
export interface IsolationProbe { pid: number, uid: number, networkInterfaces: string[], visible: Record<string, boolean> }

/**
 * The command line that wraps the pool process. `writable`: folders bwrap binds read-write (the
 * jobs' output staging root: the one place the pool process writes), the rest stays read-only.
 */
export function isolationCommand (isolation: Exclude<Isolation, 'none'>, writable: string[] = []): string[] {
  if (isolation === 'unshare') return ['unshare', '-Urn', '--']
  // a private /tmp, but the project and the Node that runs it stay visible (read-only) even when they live under /tmp
  const visible = [PROJECT_ROOT, ...(NODE_PREFIX.startsWith('/tmp/') && !isWithin(PROJECT_ROOT, NODE_PREFIX) ? [NODE_PREFIX] : [])]
  return ['bwrap', '--unshare-all', '--die-with-parent', '--new-session', '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp', ...visible.flatMap(d => ['--ro-bind', d, d]), ...writable.flatMap(d => ['--bind', d, d]), '--']
}

/** The checkout the pool's code is loaded from. */
const PROJECT_ROOT = packageRoot()
/** The Node installation that runs us (<prefix>/bin/node): the pool process runs the same binary. */
const NODE_PREFIX = dirname(dirname(process.execPath))

function rebuildError (e: { code: string, message: string }): Error {
  switch (e.code) {
    case 'invalid-module': return new InvalidModuleError(e.message)
    case 'unsupported-engine': return new UnsupportedEngineError(e.message)
    case 'queue-full': return new QueueFullError(e.message)
    case 'aborted': return new AbortedError(e.message)
    case 'executor-stopped': return new ExecutorStoppedError(e.message)
    case 'output-storage': return new OutputStorageError(e.message)
    default: return new MercatoError(e.message, { code: e.code, name: 'ExecutorError' })
  }
}

/** The pool process gets no host environment beyond what Node needs. */
function childEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' }
  for (const k of ['NODE_ENV', 'MERCATO_LOG_LEVEL']) if (process.env[k] != null && process.env[k] !== '') env[k] = process.env[k]
  return env
}

/**
 * A job the pool process died under is sent again at most this often (a
 * pool process that dies on every start must not make a job loop forever).
 */
const MAX_CRASH_RETRIES = 2

interface Entry {
  /** Message id in the current pool process (a new one each time the job is sent). */
  id: number
  job: ExecJob
  resolve: (r: ExecResult) => void
  reject: (e: unknown) => void
  cleanup?: () => void
  /** The pool process reported the job on a worker. */
  started: boolean
  /** A suspect of a crash: sent again only alone, with nothing else running. */
  quarantined: boolean
  crashes: number
  onOutput?: OutputListener
}

interface Probe { resolve: (p: IsolationProbe) => void, reject: (e: unknown) => void }

/**
 * The result of a job that brought the pool process down while it ran
 * alone: a named job failure, so the job is not taken for a transient
 * provider problem and offered again.
 */
function crashResult (job: ExecJob, why: string): ExecResult {
  return emptyFailure(job.id, { name: 'sandbox-crash', message: `the job brought the sandbox process down (${why})` }) as ExecResult
}

export class IsolatedExecutor implements Executor {
  private readonly init: ExecutorInit
  private readonly size: number
  private child?: ChildProcess
  private starting?: Promise<void>
  private stopping = false
  private nextId = 1
  /** Jobs sent to the current pool process, by message id. */
  private readonly inflight = new Map<number, Entry>()
  /** Jobs waiting in this process: while the pool restarts, or while a suspect runs alone. */
  private readonly held: Entry[] = []
  private readonly probes = new Map<number, Probe>()
  private last: ExecutorStats
  /**
   * Where jobs' output folders lie (bwrap binds it read-write; elsewhere the pool process writes
   * nothing): init.outputsRoot, or a folder of this executor's own in the OS temp dir, removed at stop.
   */
  private readonly outputsRoot: string
  private readonly ownsRoot: boolean

  constructor (init: ExecutorInit) {
    this.init = init
    this.ownsRoot = init.outputsRoot == null
    this.outputsRoot = resolve(init.outputsRoot ?? join(tmpdir(), `mercato-isolated-${process.pid}-${randomBytes(4).toString('hex')}`))
    this.size = init.poolSize > 0 ? init.poolSize : availableParallelism()
    this.last = { poolSize: this.size, busy: 0, queued: 0, completed: 0, failed: 0 }
  }

  engines (): Engine[] { return [...this.init.engines] }

  stats (): ExecutorStats {
    const waiting = this.inflight.size + this.held.length
    return { ...this.last, busy: Math.min(this.inflight.size, this.size), queued: Math.max(0, waiting - Math.min(this.inflight.size, this.size)) }
  }

  /** Ids of the jobs the pool process reports running on a worker (diagnostics, tests). */
  runningJobs (): string[] {
    return [...this.inflight.values()].filter(e => e.started).map(e => e.job.id)
  }

  async start (): Promise<void> {
    this.stopping = false
    if (this.child != null && this.starting == null) return
    this.starting ??= this.spawnChild()
    try { await this.starting } finally { this.starting = undefined }
  }

  private async spawnChild (): Promise<void> {
    const isTs = FROM_SOURCES
    const host = fileURLToPath(moduleUrl('executor/isolated-host'))
    const execArgv = isTs ? ['--import', import.meta.resolve('tsx')] : []
    // output files: jobs write them under one root, the only folder the pool process may write (bwrap)
    const outputsRoot = this.outputsRoot
    await mkdir(outputsRoot, { recursive: true, mode: 0o700 })
    const [cmd, ...wrap] = isolationCommand(this.init.isolation as Exclude<Isolation, 'none'>, [outputsRoot])
    const init: ExecutorInit = { ...this.init, poolSize: this.size, isolation: 'none', outputsRoot, deferWarmUp: false }
    const child = spawn(cmd, [...wrap, process.execPath, ...execArgv, host, JSON.stringify(init)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
      env: childEnv()
    })
    this.child = child
    let ready = false
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('isolated executor did not start in time')) }, CHILD_START_TIMEOUT_MS)
      child.once('error', (err) => { clearTimeout(timer); reject(err) })
      child.on('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`isolated executor exited (${code ?? signal ?? '?'}) before it was ready`))
        if (this.child === child) this.child = undefined
        for (const [, p] of this.probes) p.reject(new ExecutorStoppedError('isolated executor exited'))
        this.probes.clear()
        if (ready) this.crashed(signal != null ? `signal ${signal}` : `exit code ${String(code)}`)
      })
      child.on('message', (m: ChildMessage) => {
        if (m.type === 'ready') { ready = true; clearTimeout(timer); resolve(); return }
        if (m.type === 'probe') { this.probes.get(m.id)?.resolve(m.probe); this.probes.delete(m.id); return }
        const e = this.inflight.get(m.id)
        if (e == null) return
        if (m.type === 'started') { e.started = true; return }
        if (m.type === 'output') { try { e.onOutput?.(m.fd, m.data) } catch {} return }
        this.inflight.delete(m.id)
        e.cleanup?.()
        this.last = m.stats
        if (m.type === 'result') e.resolve(m.result); else e.reject(rebuildError(m.error))
        this.pump()
      })
    }).catch((err: unknown) => {
      child.kill('SIGKILL')
      if (this.child === child) this.child = undefined
      throw err
    })
    log.debug({ isolation: this.init.isolation, pid: child.pid }, 'isolated executor started')
  }

  /**
   * The pool process died with jobs in it. A job that ran alone is blamed:
   * it resolves with a `sandbox-crash` failure. Jobs that ran together are
   * suspects: each is sent again alone, and blamed only if it brings the
   * pool down again. Jobs still waiting for a worker are innocent and are
   * sent again as usual. Then the pool process is started again.
   */
  private crashed (why: string): void {
    if (this.stopping) return
    const lost = [...this.inflight.values()]
    this.inflight.clear()
    const running = lost.filter(e => e.started)
    // no job reported running (it died before the report arrived): every job is a suspect
    const suspects = running.length > 0 ? running : lost
    const retry: Entry[] = []
    for (const e of lost) {
      if (suspects.length === 1 && suspects[0] === e) {
        log.warn({ jobId: e.job.id, why }, 'a job brought the isolated executor down: failed')
        e.cleanup?.()
        e.resolve(crashResult(e.job, why))
        continue
      }
      e.crashes++
      if (e.crashes > MAX_CRASH_RETRIES) {
        e.cleanup?.()
        e.reject(new ExecutorStoppedError(`isolated executor died ${e.crashes} times while this job waited (${why})`))
        continue
      }
      e.quarantined = e.quarantined || suspects.includes(e)
      retry.push(e)
    }
    if (lost.length > 0) log.warn({ why, lost: lost.length, suspects: suspects.length }, 'isolated executor died: restarting it')
    this.held.unshift(...retry)
    if (this.held.length === 0) return // restarted on the next run()
    this.start().then(() => { this.pump() }, (err: unknown) => {
      for (const e of this.held.splice(0)) { e.cleanup?.(); e.reject(new ExecutorStoppedError(`isolated executor could not be restarted: ${err instanceof Error ? err.message : String(err)}`)) }
    })
  }

  /** Send what may run now: a suspect only alone; nothing else while a suspect waits or runs. */
  private pump (): void {
    if (this.child == null || this.starting != null) return
    for (const e of this.inflight.values()) if (e.quarantined) return
    const q = this.held.findIndex(e => e.quarantined)
    if (q >= 0) {
      if (this.inflight.size === 0) this.send(this.held.splice(q, 1)[0])
      return
    }
    for (const e of this.held.splice(0)) this.send(e)
  }

  private send (e: Entry): void {
    e.id = this.nextId++
    e.started = false
    this.inflight.set(e.id, e)
    // a function does not cross the process boundary: the pool process names output files itself
    const { nameOutput: _, ...job } = e.job
    this.child?.send({ type: 'run', id: e.id, job, live: e.onOutput != null } satisfies ParentMessage)
  }

  async run (job: ExecJob, opts: RunOptions = {}): Promise<ExecResult> {
    const { signal } = opts
    if (signal?.aborted === true) throw new AbortedError()
    if (!this.init.engines.includes(job.engine)) throw new UnsupportedEngineError(`engine ${String(job.engine)} is not supported here`)
    // stopped (a node shutting down): a job still arriving must not start a pool process again
    if (this.stopping) throw new ExecutorStoppedError('executor stopped')
    // under bwrap a folder outside the root would be the sandbox's own (its private /tmp) or read-only
    if (this.init.isolation === 'bwrap' && job.outputDir != null && !isWithin(this.outputsRoot, resolve(job.outputDir))) {
      throw new OutputStorageError(`the job's output folder ${job.outputDir} is not under the isolated executor's outputs root ${this.outputsRoot}`)
    }
    await this.start()
    return await new Promise<ExecResult>((resolve, reject) => {
      const e: Entry = { id: 0, job, resolve, reject, started: false, quarantined: false, crashes: 0, onOutput: opts.onOutput }
      if (signal != null) {
        const onAbort = (): void => {
          const h = this.held.indexOf(e)
          if (h >= 0) { this.held.splice(h, 1); e.cleanup?.(); reject(new AbortedError()); return }
          if (this.inflight.get(e.id) === e) this.child?.send({ type: 'abort', id: e.id } satisfies ParentMessage)
        }
        signal.addEventListener('abort', onAbort, { once: true })
        e.cleanup = () => { signal.removeEventListener('abort', onAbort) }
      }
      this.held.push(e)
      this.pump()
    })
  }

  /** What the pool process sees: its pid, uid, network interfaces, and which of `paths` exist for it. */
  async probe (paths: string[] = []): Promise<IsolationProbe> {
    await this.start()
    const id = this.nextId++
    return await new Promise<IsolationProbe>((resolve, reject) => {
      this.probes.set(id, { resolve, reject })
      this.child?.send({ type: 'probe', id, paths } satisfies ParentMessage)
    })
  }

  async stop (): Promise<void> {
    this.stopping = true
    for (const e of [...this.held.splice(0), ...this.inflight.values()]) { e.cleanup?.(); e.reject(new ExecutorStoppedError('executor stopped')) }
    this.inflight.clear()
    const child = this.child
    this.child = undefined
    if (child != null) {
      await new Promise<void>(resolve => {
        if (child.exitCode != null || child.signalCode != null) { resolve(); return }
        const timer = setTimeout(() => { child.kill('SIGKILL') }, 5000)
        child.once('exit', () => { clearTimeout(timer); resolve() })
        child.kill('SIGTERM')
      })
    }
    // what a pool process killed mid-job left in our own root (a given root is its owner's to clean)
    if (this.ownsRoot) await rm(this.outputsRoot, { recursive: true, force: true }).catch(() => {})
  }
}

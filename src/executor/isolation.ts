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
 *   --new-session --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp`.
 *
 * The parent talks to the child over Node's IPC channel (advanced
 * serialization, so bytes travel as Uint8Array). Refusals keep their names:
 * the child sends the error code and the parent rebuilds the same class.
 * Turn it on in the provider config: "executor": { "isolation": "bwrap" }.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { logger } from '../logger.js'
import { MercatoError } from '../errors.js'
import { AbortedError, ExecutorStoppedError, InvalidModuleError, QueueFullError, UnsupportedEngineError } from './errors.js'
import type { Engine, ExecJob, ExecResult, Executor, ExecutorInit, ExecutorStats, Isolation } from './index.js'

const log = logger('executor:isolation')

/** How long start() waits for the isolated pool to report ready. */
const CHILD_START_TIMEOUT_MS = 30_000

export type ParentMessage =
  | { type: 'run', id: number, job: ExecJob }
  | { type: 'abort', id: number }
  | { type: 'probe', id: number, paths: string[] }

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'result', id: number, result: ExecResult, stats: ExecutorStats }
  | { type: 'error', id: number, error: { code: string, message: string }, stats: ExecutorStats }
  | { type: 'probe', id: number, probe: IsolationProbe }

/** What the isolated process sees of its host (tests, `mercato` diagnostics). */
export interface IsolationProbe { pid: number, uid: number, networkInterfaces: string[], visible: Record<string, boolean> }

/** The command line that wraps the pool process. */
export function isolationCommand (isolation: Exclude<Isolation, 'none'>): string[] {
  if (isolation === 'unshare') return ['unshare', '-Urn', '--']
  // a private /tmp, but the project itself stays visible (read-only) even when it lives under /tmp
  return ['bwrap', '--unshare-all', '--die-with-parent', '--new-session', '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp', '--ro-bind', PROJECT_ROOT, PROJECT_ROOT, '--']
}

/** The checkout the pool's code is loaded from. */
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '')

function rebuildError (e: { code: string, message: string }): Error {
  switch (e.code) {
    case 'invalid-module': return new InvalidModuleError(e.message)
    case 'unsupported-engine': return new UnsupportedEngineError(e.message)
    case 'queue-full': return new QueueFullError(e.message)
    case 'aborted': return new AbortedError(e.message)
    case 'executor-stopped': return new ExecutorStoppedError(e.message)
    default: return new MercatoError(e.message, { code: e.code, name: 'ExecutorError' })
  }
}

/** The pool process gets no host environment beyond what Node needs. */
function childEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' }
  for (const k of ['NODE_ENV', 'MERCATO_LOG_LEVEL']) if (process.env[k] != null && process.env[k] !== '') env[k] = process.env[k]
  return env
}

interface InFlight { resolve: (r: any) => void, reject: (e: unknown) => void, cleanup?: () => void }

export class IsolatedExecutor implements Executor {
  private readonly init: ExecutorInit
  private readonly size: number
  private child?: ChildProcess
  private starting?: Promise<void>
  private nextId = 1
  private readonly inflight = new Map<number, InFlight>()
  private last: ExecutorStats

  constructor (init: ExecutorInit) {
    this.init = init
    this.size = init.poolSize > 0 ? init.poolSize : availableParallelism()
    this.last = { poolSize: this.size, busy: 0, queued: 0, completed: 0, failed: 0 }
  }

  engines (): Engine[] { return [...this.init.engines] }

  stats (): ExecutorStats {
    const waiting = this.inflight.size
    return { ...this.last, busy: Math.min(waiting, this.size), queued: Math.max(0, waiting - this.size) }
  }

  async start (): Promise<void> {
    if (this.child != null && this.starting == null) return
    this.starting ??= this.spawnChild()
    try { await this.starting } finally { this.starting = undefined }
  }

  private async spawnChild (): Promise<void> {
    const isTs = import.meta.url.endsWith('.ts')
    const host = fileURLToPath(new URL(isTs ? './isolated-host.ts' : './isolated-host.js', import.meta.url))
    const execArgv = isTs ? ['--import', import.meta.resolve('tsx')] : []
    const [cmd, ...wrap] = isolationCommand(this.init.isolation as Exclude<Isolation, 'none'>)
    const init: ExecutorInit = { ...this.init, poolSize: this.size, isolation: 'none' }
    const child = spawn(cmd, [...wrap, process.execPath, ...execArgv, host, JSON.stringify(init)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
      env: childEnv()
    })
    this.child = child
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('isolated executor did not start in time')) }, CHILD_START_TIMEOUT_MS)
      child.once('error', (err) => { clearTimeout(timer); reject(err) })
      child.on('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`isolated executor exited (${code ?? signal ?? '?'}) before it was ready`))
        if (this.child === child) this.child = undefined
        for (const [, f] of this.inflight) { f.cleanup?.(); f.reject(new ExecutorStoppedError('isolated executor exited')) }
        this.inflight.clear()
      })
      child.on('message', (m: ChildMessage) => {
        if (m.type === 'ready') { clearTimeout(timer); resolve(); return }
        const f = this.inflight.get(m.id)
        if (f == null) return
        this.inflight.delete(m.id)
        f.cleanup?.()
        if (m.type === 'result') { this.last = m.stats; f.resolve(m.result) } else if (m.type === 'error') { this.last = m.stats; f.reject(rebuildError(m.error)) } else f.resolve(m.probe)
      })
    }).catch((err: unknown) => {
      child.kill('SIGKILL')
      this.child = undefined
      throw err
    })
    log.debug({ isolation: this.init.isolation, pid: child.pid }, 'isolated executor started')
  }

  private send (m: ParentMessage): void {
    this.child?.send(m)
  }

  async run (job: ExecJob, opts: { signal?: AbortSignal } = {}): Promise<ExecResult> {
    const { signal } = opts
    if (signal?.aborted === true) throw new AbortedError()
    if (!this.init.engines.includes(job.engine)) throw new UnsupportedEngineError(`engine ${String(job.engine)} is not supported here`)
    await this.start()
    const id = this.nextId++
    return await new Promise<ExecResult>((resolve, reject) => {
      const f: InFlight = { resolve, reject }
      if (signal != null) {
        const onAbort = (): void => { this.send({ type: 'abort', id }) }
        signal.addEventListener('abort', onAbort, { once: true })
        f.cleanup = () => { signal.removeEventListener('abort', onAbort) }
      }
      this.inflight.set(id, f)
      this.send({ type: 'run', id, job })
    })
  }

  /** What the pool process sees: its pid, uid, network interfaces, and which of `paths` exist for it. */
  async probe (paths: string[] = []): Promise<IsolationProbe> {
    await this.start()
    const id = this.nextId++
    return await new Promise<IsolationProbe>((resolve, reject) => {
      this.inflight.set(id, { resolve, reject })
      this.send({ type: 'probe', id, paths })
    })
  }

  async stop (): Promise<void> {
    const child = this.child
    if (child == null) return
    this.child = undefined
    await new Promise<void>(resolve => {
      if (child.exitCode != null || child.signalCode != null) { resolve(); return }
      const timer = setTimeout(() => { child.kill('SIGKILL') }, 5000)
      child.once('exit', () => { clearTimeout(timer); resolve() })
      child.kill('SIGTERM')
    })
  }
}

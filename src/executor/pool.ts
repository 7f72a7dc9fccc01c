/**
 * The worker pool (main thread side): validates and prepares jobs, keeps the
 * compiled-module cache, queues jobs, dispatches one job per worker, enforces
 * the wall-clock deadline from outside the worker, and replaces workers that
 * were killed or faulted.
 */
import { Worker } from 'node:worker_threads'
import { closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, constants as fsc } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { bytesMatchCid, cidOfBytes } from '../crypto/index.js'
import { unixfsCidOfFile } from '../crypto/unixfs.js'
import { logger } from '../logger.js'
import { AbortedError, ExecutorStoppedError, InvalidInputsError, InvalidModuleError, OutputStorageError, QueueFullError, UnsupportedEngineError } from './errors.js'
import { LruCache } from '../lru.js'
import { HEADER_BYTES, outputBufferSize, readOutput } from './output.js'
import { MemoryCapExceeded, ModuleRejected, WASM_PAGE, prepareModule, type MemoryInfo } from './wasm-module.js'
import { computeResultHash, emptyFailure } from './hash.js'
import { DEFAULT_OUTPUT_CAPS, inputListProblem, type OutputCaps, type StagedOutput } from './files.js'
import type { InputEntry } from './inputs.js'
import { MAX_INPUT_EXTENT_FILES, MAX_INPUT_EXTENTS, MAX_JOB_INPUTS, JS_HARD_KILL_GRACE_MS, LIVE_OUTPUT_POLL_MS, WORKER_HEAP_MB, WORKER_IDLE_MS, WORKER_START_TIMEOUT_MS } from './constants.js'
import type { Engine, ExecInput, ExecJob, ExecResult, Executor, ExecutorInit, ExecutorStats, JobLimits, OutputFile, OutputListener, RunOptions } from './index.js'
import type { DoneMessage, FailureName, RunMessage, WarmMessage, WorkerInit, WorkerMessage } from './protocol.js'
import { FROM_SOURCES, moduleUrl, packageFile, plainWorkerExecArgv } from '../paths.js'
import { compileQuickJS } from './quickjs-wasm.js'

const log = logger('executor')

interface Compiled { module: WebAssembly.Module, memory?: MemoryInfo, growHook: boolean, fuel: boolean }

interface Pending {
  job: ExecJob
  msg: RunMessage
  limits: JobLimits
  resolve: (r: ExecResult) => void
  reject: (err: unknown) => void
  signal?: AbortSignal
  onAbort?: () => void
  /** Called when the job is handed to a worker (the isolated host reports it: crash blame). */
  onStart?: () => void
  onOutput?: OutputListener
  /** `exited` is set when the job's worker is killed: true once that thread is gone, false if it would not go */
  guard: { exited?: Promise<boolean> }
}

/** A job's output staging: its folder (made by the pool when `own`), and the worker's descriptor table. */
interface OutputStage { dir: string, own: boolean, table: SharedArrayBuffer }

/** How long a killed worker's output descriptors wait for the thread to end before they are left open (never closed under a live thread). */
const KILLED_WORKER_EXIT_WAIT_MS = 30_000

/** The I/O of a finished job, read from the worker's buffer before the worker takes another job. */
interface Finished { exitCode: number, output?: string, truncated: boolean, wallMs: number, memoryBytes: number, fuel?: number, error?: DoneMessage['error'], files?: StagedOutput[], hostError?: string }

interface Running extends Pending {
  startedAt: number
  timer: NodeJS.Timeout
  /** live output: bytes of stdout and stderr already handed to onOutput, and the poll that hands more */
  sent: [number, number]
  poll?: NodeJS.Timeout
}

interface Slot {
  worker: Worker
  output: SharedArrayBuffer
  state: 'starting' | 'idle' | 'busy' | 'dead'
  everReady: boolean
  /** QuickJS loaded and warmed up */
  jsWarm?: boolean
  running?: Running
  ready: Promise<void>
  /** when it last became idle (performance.now()) */
  idleSince: number
  /** set while an idle worker beyond the warm ones waits to be stopped */
  idleTimer?: NodeJS.Timeout
  /** resolves when the worker thread has exited */
  exited: Promise<void>
}

/** A worker file that is not there (dist/ not built): said at start, not at the first job. */
function checkEntry (spec: { entry: string | URL, eval: boolean }): void {
  if (spec.eval || !(spec.entry instanceof URL) || spec.entry.protocol !== 'file:') return
  if (!existsSync(spec.entry)) throw new Error(`executor worker ${fileURLToPath(spec.entry)} is missing; run \`npm run build\``)
}

/**
 * How a worker is started. Compiled (.js): the worker file directly. From
 * TypeScript source (tsx, mocha --import=tsx): Node 20 does not apply the
 * parent's module hooks to a worker's entry, so a two-line bootstrap
 * registers tsx in the worker and then imports worker.ts; or, with
 * MERCATO_COMPILED_WORKERS=1, the compiled worker file without tsx.
 */
function workerSpec (): { entry: string | URL, eval: boolean, execArgv?: string[] } {
  // compiled, the worker inherits the process's flags; from the sources it gets none (paths.ts)
  const execArgv = plainWorkerExecArgv()
  if (!FROM_SOURCES) return { entry: moduleUrl('executor/worker'), eval: false, execArgv }
  // MERCATO_COMPILED_WORKERS=1 (npm test, which builds dist/ first): the compiled worker even from
  // the sources, as users run it; tsx in each worker cost ≈ 0.25 s of CPU per worker start
  if (process.env.MERCATO_COMPILED_WORKERS === '1') return { entry: pathToFileURL(packageFile('dist/executor/worker.js')), eval: false, execArgv }
  const api = import.meta.resolve('tsx/esm/api')
  const target = moduleUrl('executor/worker').href
  const entry = `import(${JSON.stringify(api)}).then(api => { api.register(); return import(${JSON.stringify(target)}) })`
  return { entry, eval: true, execArgv }
}

function isAborted (signal?: AbortSignal): boolean { return signal?.aborted === true }

export function clampLimits (l: JobLimits, init: ExecutorInit): JobLimits {
  const num = (v: unknown, d: number): number => typeof v === 'number' && Number.isFinite(v) ? v : d
  const limits: JobLimits = {
    timeoutMs: Math.max(1, Math.min(Math.floor(num(l?.timeoutMs, init.maxTimeoutMs)), init.maxTimeoutMs)),
    memoryMb: Math.max(1, Math.min(Math.floor(num(l?.memoryMb, init.maxMemoryMb)), init.maxMemoryMb)),
    outputBytes: Math.max(0, Math.min(Math.floor(num(l?.outputBytes, init.maxOutputBytes)), init.maxOutputBytes))
  }
  if (typeof l?.fuel === 'number' && Number.isFinite(l.fuel) && l.fuel >= 0) limits.fuel = Math.floor(l.fuel)
  return limits
}

/**
 * Open a job's input files read-only (no symlink followed at the last step) and take their sizes:
 * the worker reads through these descriptors, the pool closes them when the job ends. An input
 * given as extents opens each of their files once and must lie within them. Refuses a bad list
 * (paths, duplicates, clashes, too many, too many ranges) or a file that cannot be opened.
 */
export function openInputs (inputs: ExecInput[]): InputEntry[] {
  if (!Array.isArray(inputs)) throw new InvalidInputsError('job inputs must be a list')
  if (inputs.length > MAX_JOB_INPUTS) throw new InvalidInputsError(`more than ${MAX_JOB_INPUTS} input files`)
  const problem = inputListProblem(inputs.map(i => String(i?.path)))
  if (problem != null) throw new InvalidInputsError(problem)
  const opened: InputEntry[] = []
  // every descriptor opened here, closed at once if the list is refused
  const fds: number[] = []
  try {
    for (const i of inputs) {
      // each file opened once (an input's ranges may share one), with its size
      const files = new Map<string, { fd: number, size: number }>()
      const openFile = (file: string): { fd: number, size: number } => {
        let f = files.get(file)
        if (f != null) return f
        if (files.size >= MAX_INPUT_EXTENT_FILES) throw new InvalidInputsError(`input ${i.path}: ranges in more than ${MAX_INPUT_EXTENT_FILES} files`)
        let fd: number
        try { fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW) } catch (err: any) { throw new InvalidInputsError(`input ${i.path}: cannot open (${String(err?.code ?? err)})`, err) }
        fds.push(fd)
        const st = fstatSync(fd)
        if (!st.isFile()) throw new InvalidInputsError(`input ${i.path}: not a regular file`)
        f = { fd, size: st.size }
        files.set(file, f)
        return f
      }
      if ('extents' in i) {
        if (!Array.isArray(i.extents) || i.extents.length > MAX_INPUT_EXTENTS) throw new InvalidInputsError(`input ${i.path}: more than ${MAX_INPUT_EXTENTS} ranges`)
        const entry: InputEntry = { path: i.path, size: 0, parts: [] }
        for (const x of i.extents) {
          if (!Number.isSafeInteger(x?.offset) || x.offset < 0 || !Number.isSafeInteger(x.length) || x.length < 0) throw new InvalidInputsError(`input ${i.path}: a range is not two counts of bytes`)
          const f = openFile(String(x.file))
          if (x.offset + x.length > f.size) throw new InvalidInputsError(`input ${i.path}: a range past the end of its file`)
          entry.parts.push({ fd: f.fd, offset: x.offset, length: x.length })
          entry.size += x.length
        }
        opened.push(entry)
      } else {
        const f = openFile(i.file)
        opened.push({ path: i.path, size: f.size, parts: [{ fd: f.fd, offset: 0, length: f.size }] })
      }
    }
  } catch (err) {
    for (const fd of fds) { try { closeSync(fd) } catch {} }
    throw err
  }
  return opened
}

export function closeInputs (entries: InputEntry[] | undefined): void {
  for (const e of entries ?? []) {
    for (const fd of new Set(e.parts.map(p => p.fd))) { try { closeSync(fd) } catch {} }
  }
}

/** Close the output descriptors a (killed) worker left in the table. */
function closeOutputFds (table: SharedArrayBuffer): void {
  const t = new Int32Array(table)
  for (let i = 0; i < t.length; i++) {
    const fd = Atomics.exchange(t, i, -1)
    if (fd >= 0) { try { closeSync(fd) } catch {} }
  }
}

/**
 * A job that named no files (failed, killed, or wrote none) keeps nothing: the pool's own folder
 * goes, a caller's folder is emptied. Not while a killed worker might still write (`gone` false).
 */
function dropOutputs (stage: OutputStage, gone: boolean): void {
  if (!gone) { log.warn({ dir: stage.dir }, 'a killed executor worker did not exit; its output files are left'); return }
  try {
    if (stage.own) rmSync(stage.dir, { recursive: true, force: true })
    else for (const name of readdirSync(stage.dir)) rmSync(join(stage.dir, name), { recursive: true, force: true })
  } catch (err) { log.warn({ err, dir: stage.dir }, 'could not remove a job\'s output files') }
}

/** Resolves true once the slot's worker thread has exited, false if it did not within KILLED_WORKER_EXIT_WAIT_MS. */
async function exitOf (slot: Slot): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>(resolve => { timer = setTimeout(() => { resolve(false) }, KILLED_WORKER_EXIT_WAIT_MS) })
  try { return await Promise.race([slot.exited.then(() => true), late]) } finally { clearTimeout(timer) }
}

export class ExecutorPool implements Executor {
  /** Inputs may come as extents of files: this process opens them itself. */
  readonly readsInPlace = true
  private readonly init: ExecutorInit
  /** caps on each job's output files (init.outputFiles over the defaults), handed to the worker with every job */
  private readonly outputCaps: OutputCaps
  private readonly size: number
  /** live workers (starting, idle or busy): `warm` of them always, up to `size` while there is work */
  private readonly slots: Slot[] = []
  private readonly warm: number
  private readonly queue: Pending[] = []
  /**
   * Compiled modules by `${cid}/${capPages}/${fuel}` (the same bytes under another memory cap or
   * with fuel metering compile differently). Promises: concurrent jobs with one module share its
   * compilation; a failed one is not kept.
   */
  private readonly cache: LruCache<Promise<Compiled>>
  /** CIDs of module buffers already hashed (a buffer is checked once, not on every run) */
  private readonly hashed = new WeakMap<Uint8Array, string>()
  private readonly spec = workerSpec()
  private running = false
  /** stop() was called (and start() not since): a job that arrives now must not bring the workers back */
  private stopped = false
  private starting?: Promise<void>
  /** QuickJS's wasm, compiled at start (at warmUp() with deferWarmUp) and posted to every worker */
  private quickjs?: WebAssembly.Module
  /** workers load QuickJS as they start (false with init.deferWarmUp until warmUp() has compiled it) */
  private warmJs: boolean
  private warming = false
  private completed = 0
  private failed = 0

  constructor (init: ExecutorInit) {
    this.init = init
    this.size = init.poolSize > 0 ? init.poolSize : availableParallelism()
    this.warm = Math.max(0, Math.min(Math.floor(init.warmWorkers ?? 1), this.size))
    this.cache = new LruCache(init.moduleCacheSize)
    this.warmJs = init.deferWarmUp !== true
    this.outputCaps = { ...DEFAULT_OUTPUT_CAPS, ...(init.outputFiles ?? {}) }
  }

  engines (): Engine[] { return [...this.init.engines] }

  stats (): ExecutorStats {
    return {
      poolSize: this.size,
      busy: this.slots.filter(s => s.state === 'busy').length,
      queued: this.queue.length,
      completed: this.completed,
      failed: this.failed,
      jsWarm: this.slots.filter(s => s.jsWarm === true && s.state !== 'dead').length
    }
  }

  /** Compiled-module cache counters (benchmarks, metrics). */
  cacheStats (): { size: number, hits: number, misses: number } {
    return { size: this.cache.size, hits: this.cache.hits, misses: this.cache.misses }
  }

  async start (): Promise<void> {
    this.stopped = false
    if (this.running) return
    this.starting ??= (async () => {
      // compiled once here, QuickJS's code (and the optimised code V8 makes of it) serves every worker;
      // with deferWarmUp, at warmUp() (loading QuickJS is no part of a node's start)
      if (this.warmJs && this.init.engines.includes('js')) this.quickjs = await compileQuickJS()
      // warm workers start now (a broken setup fails start()), or with deferWarmUp at warmUp() (a
      // missing worker file still fails start()); the rest start when jobs wait
      if (this.init.deferWarmUp === true) checkEntry(this.spec)
      else for (let i = 0; i < this.warm; i++) this.slots.push(this.spawn())
      await Promise.all(this.slots.map(async s => { await s.ready }))
      this.running = true
      log.debug({ poolSize: this.size, warm: this.warm }, 'executor started')
    })()
    try { await this.starting } finally { this.starting = undefined }
  }

  /**
   * With `deferWarmUp`: the warm workers start now, and load and warm up QuickJS (those running
   * start it after their job, those started later at once). Until then a job starts a worker of
   * its own, and a JS job loads QuickJS itself.
   */
  warmUp (): void {
    if (this.warming || this.stopped) return
    this.warming = true
    for (let live = this.slots.filter(s => s.state !== 'dead').length; live < this.warm; live++) this.slots.push(this.spawnLogged())
    if (this.warmJs) return
    if (!this.init.engines.includes('js')) { this.warmJs = true; return }
    // compiled first, then handed to the workers (one started meanwhile waits for it, as the others)
    void compileQuickJS().then(quickjs => {
      if (this.stopped) return
      this.quickjs = quickjs
      this.warmJs = true
      for (const s of this.slots) if (s.state !== 'dead') s.worker.postMessage({ type: 'warm', quickjs } satisfies WarmMessage)
    })
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (!this.running && this.slots.length === 0) return
    this.running = false
    for (const p of this.queue.splice(0)) { this.detach(p); p.reject(new ExecutorStoppedError('executor stopped')) }
    const slots = this.slots.splice(0)
    await Promise.all(slots.map(async s => {
      clearTimeout(s.idleTimer)
      if (s.running != null) {
        clearTimeout(s.running.timer)
        clearInterval(s.running.poll)
        s.running.guard.exited = exitOf(s)
        this.detach(s.running)
        s.running.reject(new ExecutorStoppedError('executor stopped'))
        s.running = undefined
      }
      s.state = 'dead'
      await s.worker.terminate()
    }))
    this.cache.clear()
    log.debug('executor stopped')
  }

  async run (job: ExecJob, opts: RunOptions & { onStart?: () => void } = {}): Promise<ExecResult> {
    const { signal, onStart, onOutput } = opts
    if (signal?.aborted === true) throw new AbortedError()
    if (job == null || typeof job.id !== 'string') throw new TypeError('job.id must be a string')
    if (!this.init.engines.includes(job.engine)) throw new UnsupportedEngineError(`engine ${String(job.engine)} is not supported here (engines: ${this.init.engines.join(', ')})`)
    if (this.stopped) throw new ExecutorStoppedError('executor stopped')
    if (!this.running) await this.start()
    this.checkQueue()
    const limits = clampLimits(job.limits, this.init)
    const seed = job.seed ?? job.id
    let msg: RunMessage
    if (job.engine === 'wasm') {
      let compiled: Compiled
      try {
        compiled = await this.compile(job, limits)
      } catch (err) {
        if (err instanceof MemoryCapExceeded) return this.failure(job, limits, 'memory-limit', err.message)
        throw err
      }
      msg = {
        type: 'run',
        engine: 'wasm',
        module: compiled.module,
        memory: compiled.memory,
        growHook: compiled.growHook,
        fuelMetered: compiled.fuel,
        args: (job.args ?? []).map(String),
        env: { ...(job.env ?? {}) },
        stdin: job.stdin ?? new Uint8Array(0),
        timeoutMs: limits.timeoutMs,
        memoryBytes: limits.memoryMb * 1024 * 1024,
        outputBytes: limits.outputBytes,
        fuel: limits.fuel,
        seed,
        files: this.outputCaps
      }
    } else {
      if (typeof job.source !== 'string') throw new InvalidModuleError('js job without source')
      let input: string
      try { input = JSON.stringify(job.input ?? null) } catch (err) { throw new InvalidModuleError('job input is not JSON-serialisable', err) }
      msg = {
        type: 'run',
        engine: 'js',
        source: job.source,
        input,
        timeoutMs: limits.timeoutMs,
        memoryBytes: limits.memoryMb * 1024 * 1024,
        outputBytes: limits.outputBytes,
        fuel: limits.fuel,
        seed,
        files: this.outputCaps
      }
    }
    if (isAborted(signal)) throw new AbortedError()
    if (!this.running) throw new ExecutorStoppedError()
    this.checkQueue()
    // input files: opened here, read by the worker through the descriptors, closed when the job ends
    const inputs = job.inputs != null ? openInputs(job.inputs) : undefined
    if (inputs != null) msg.inputs = inputs
    // output files: written by the worker into the job's staging folder as the guest writes them
    let stage: OutputStage
    try {
      stage = this.stageOutputs(job)
    } catch (err) {
      closeInputs(inputs)
      throw err
    }
    msg.outputDir = stage.dir
    msg.fdTable = stage.table
    const guard: { exited?: Promise<boolean> } = {}
    let result: ExecResult | undefined
    try {
      result = await this.enqueue(job, msg, limits, signal, onStart, onOutput, guard)
      return result
    } finally {
      // a killed worker's descriptors are closed, and what it wrote removed, only once its thread is
      // gone (never under a live writer); that happens after the caller has the result
      const release = (gone: boolean): void => {
        if (gone) {
          closeInputs(inputs)
          closeOutputFds(stage.table)
        }
        if (result?.outputs == null) dropOutputs(stage, gone)
      }
      if (guard.exited == null) release(true)
      else void guard.exited.then(release)
    }
  }

  /** The job's output staging folder (made when missing) and a descriptor table of one slot per file the caps allow. */
  private stageOutputs (job: ExecJob): OutputStage {
    const table = new SharedArrayBuffer(4 * Math.max(1, this.outputCaps.files))
    new Int32Array(table).fill(-1)
    try {
      if (job.outputDir != null) {
        mkdirSync(job.outputDir, { recursive: true, mode: 0o700 })
        // the worker names files o1, o2, ... afresh for every job: the folder must be the job's own
        if (readdirSync(job.outputDir).length > 0) throw Object.assign(new Error(`${job.outputDir} is not empty`), { code: 'ENOTEMPTY' })
        return { dir: job.outputDir, own: false, table }
      }
      const root = this.init.outputsRoot ?? tmpdir()
      mkdirSync(root, { recursive: true, mode: 0o700 })
      return { dir: mkdtempSync(join(root, 'mercato-outputs-')), own: true, table }
    } catch (err: any) {
      throw new OutputStorageError(`cannot make the job's output folder: ${String(err?.code ?? err?.message ?? err)}`, err)
    }
  }

  private async enqueue (job: ExecJob, msg: RunMessage, limits: JobLimits, signal: AbortSignal | undefined, onStart: (() => void) | undefined, onOutput: OutputListener | undefined, guard: { exited?: Promise<boolean> }): Promise<ExecResult> {
    return await new Promise<ExecResult>((resolve, reject) => {
      const pending: Pending = { job, msg, limits, resolve, reject, signal, onStart, onOutput, guard }
      if (signal != null) {
        pending.onAbort = () => { this.abort(pending) }
        signal.addEventListener('abort', pending.onAbort, { once: true })
      }
      this.queue.push(pending)
      this.dispatch()
    })
  }

  // ---------------------------------------------------------------- internals

  private checkQueue (): void {
    const idle = this.slots.some(s => s.state === 'idle') || this.slots.length < this.size
    if (!idle && this.queue.length >= this.init.queueSize) throw new QueueFullError(`executor queue is full (${this.queue.length} waiting)`)
  }

  private async compile (job: ExecJob, limits: JobLimits): Promise<Compiled> {
    const bytes = job.module
    if (!(bytes instanceof Uint8Array)) throw new InvalidModuleError('wasm job without module bytes')
    // hash a module's bytes once per buffer: a provider hands the same cached buffer to every run
    let cid = this.hashed.get(bytes)
    if (job.moduleCid != null) {
      if (cid !== job.moduleCid) {
        if (!bytesMatchCid(bytes, job.moduleCid)) throw new InvalidModuleError(`module bytes do not match CID ${job.moduleCid}`)
        cid = job.moduleCid
      }
    } else {
      cid ??= cidOfBytes(bytes)
    }
    this.hashed.set(bytes, cid)
    const maxPages = Math.floor(limits.memoryMb * 1024 * 1024 / WASM_PAGE)
    const fuel = limits.fuel != null
    const key = `${cid}/${maxPages}/${fuel ? 'fuel' : '-'}`
    let entry = this.cache.get(key)
    if (entry == null) {
      entry = (async () => {
        let prepared
        try {
          prepared = prepareModule(bytes, { maxPages, fuel })
        } catch (err) {
          if (err instanceof ModuleRejected) throw new InvalidModuleError(err.message, err)
          throw err
        }
        if (!prepared.hasStart) throw new InvalidModuleError('module exports no _start (not a WASI command)')
        let module: WebAssembly.Module
        try {
          module = await WebAssembly.compile(prepared.bytes)
        } catch (err) {
          throw new InvalidModuleError(`module does not compile: ${err instanceof Error ? err.message : String(err)}`, err)
        }
        return { module, memory: prepared.memory, growHook: prepared.growHook, fuel: prepared.fuel }
      })()
      const e = entry
      this.cache.set(key, e)
      e.catch(() => { this.cache.delete(key) })
    }
    return await entry
  }

  private failure (job: ExecJob, limits: JobLimits, name: FailureName, message: string): ExecResult {
    this.failed++
    return emptyFailure(job.id, { name, message }, limits.fuel != null) as ExecResult
  }

  private spawn (): Slot {
    const output = new SharedArrayBuffer(outputBufferSize(this.init.maxOutputBytes))
    const workerData: WorkerInit = { output, maxOutputBytes: this.init.maxOutputBytes, js: this.warmJs && this.init.engines.includes('js'), jsMemoryBytes: this.init.maxMemoryMb * 1024 * 1024, quickjs: this.quickjs }
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env)) if (v != null && (k.startsWith('TSX') || k === 'NODE_ENV')) env[k] = v
    const worker = new Worker(this.spec.entry, {
      eval: this.spec.eval,
      workerData,
      execArgv: this.spec.execArgv,
      env,
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 }
    })
    let markReady!: () => void
    let failReady!: (err: unknown) => void
    const ready = new Promise<void>((resolve, reject) => { markReady = resolve; failReady = reject })
    ready.catch(() => {})
    const exited = new Promise<void>(resolve => { worker.once('exit', () => { resolve() }) })
    const slot: Slot = { worker, output, state: 'starting', everReady: false, ready, exited, idleSince: 0 }
    const startTimer = setTimeout(() => { failReady(new Error('executor worker did not start in time')) }, WORKER_START_TIMEOUT_MS)
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') {
        clearTimeout(startTimer)
        slot.everReady = true
        markReady()
        if (slot.state === 'starting') this.idle(slot)
      } else if (m.type === 'warmed') {
        slot.jsWarm = true
      } else {
        this.finish(slot, m)
      }
    })
    const fault = (why: string): void => {
      clearTimeout(startTimer)
      if (slot.state === 'dead') return
      failReady(new Error(why))
      log.warn({ why }, 'executor worker faulted')
      if (slot.running != null) this.settleKilled(slot, 'trap', `executor worker fault: ${why}`)
      this.replace(slot)
    }
    worker.on('error', (err) => { fault(err.message) })
    worker.on('exit', (code) => { fault(`worker exited with code ${code}`) })
    return slot
  }

  /**
   * Terminate a worker (killed, faulted or recycled). A fresh one takes its
   * place if the pool is below its warm count; waiting jobs start more.
   */
  private replace (slot: Slot): void {
    if (slot.state === 'dead') return
    this.retire(slot)
    if (!this.running) return
    if (!slot.everReady) {
      // it never started: do not loop on a broken setup; fail what waits for it if nothing else can run it
      if (!this.slots.some(s => s.everReady)) {
        for (const p of this.queue.splice(0)) { this.detach(p); p.reject(new ExecutorStoppedError('executor worker failed to start')) }
      }
      return
    }
    if (this.slots.length < this.warm) this.slots.push(this.spawnLogged())
    this.dispatch()
  }

  private retire (slot: Slot): void {
    slot.state = 'dead'
    clearTimeout(slot.idleTimer)
    slot.worker.terminate().catch(() => {})
    const i = this.slots.indexOf(slot)
    if (i >= 0) this.slots.splice(i, 1)
  }

  /** A worker is free: give it work; a worker beyond the warm ones stops after WORKER_IDLE_MS without any. */
  private idle (slot: Slot): void {
    slot.state = 'idle'
    slot.idleSince = performance.now()
    this.dispatch()
    if (slot.state !== 'idle' || this.slots.length <= this.warm) return
    clearTimeout(slot.idleTimer)
    slot.idleTimer = setTimeout(() => {
      if (slot.state === 'idle' && this.slots.length > this.warm) {
        this.retire(slot)
        log.debug({ workers: this.slots.length }, 'idle executor worker stopped')
      }
    }, this.init.workerIdleMs ?? WORKER_IDLE_MS)
    slot.idleTimer.unref()
  }

  private spawnLogged (): Slot {
    const fresh = this.spawn()
    fresh.ready.catch((err: unknown) => { if (this.running) log.error({ err }, 'replacement executor worker failed to start') })
    return fresh
  }

  /**
   * The worker for the next job: of the first `warm` workers (the ones kept), the one idle longest,
   * which has had the most time to ready its next job's context after its last job (a trivial JS
   * job on a worker still readying it waits ≈ 0.7 ms for it); beyond those, the first idle one, so
   * that a worker started for a burst goes idle and stops once the burst is over.
   */
  private nextIdle (): Slot | undefined {
    let best: Slot | undefined
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i]
      if (slot.state !== 'idle') continue
      if (i >= this.warm) return best ?? slot
      if (best == null || slot.idleSince < best.idleSince) best = slot
    }
    return best
  }

  private dispatch (): void {
    if (!this.running) return
    for (let slot = this.nextIdle(); slot != null && this.queue.length > 0; slot = this.nextIdle()) {
      const p = this.queue.shift() as Pending
      clearTimeout(slot.idleTimer)
      slot.state = 'busy'
      const grace = p.msg.engine === 'js' ? JS_HARD_KILL_GRACE_MS : 0
      const running: Running = {
        ...p,
        startedAt: performance.now(),
        timer: setTimeout(() => {
          this.settleKilled(slot, 'timeout', `timed out after ${p.limits.timeoutMs} ms`)
          this.replace(slot)
        }, p.limits.timeoutMs + grace),
        sent: [0, 0]
      }
      // the idle worker's buffer still holds its last job's lengths until it resets them: clear them
      // here, so a live-output poll never hands this job the last one's output
      const header = new Int32Array(slot.output, 0, 2)
      Atomics.store(header, 0, 0)
      Atomics.store(header, 1, 0)
      if (p.onOutput != null) {
        running.poll = setInterval(() => { this.pumpOutput(slot, running) }, LIVE_OUTPUT_POLL_MS)
        running.poll.unref()
      }
      slot.running = running
      p.onStart?.()
      slot.worker.postMessage(p.msg)
    }
    // jobs still waiting: start workers for them, up to the pool size
    let starting = this.slots.filter(s => s.state === 'starting').length
    while (this.queue.length > starting && this.slots.length < this.size) {
      this.slots.push(this.spawnLogged())
      starting++
    }
  }

  /** Hand a running job's listener what its guest wrote since the last call. */
  private pumpOutput (slot: Slot, r: Running): void {
    if (slot.running !== r || r.onOutput == null) return
    const header = new Int32Array(slot.output, 0, 2)
    const region = this.init.maxOutputBytes
    for (const fd of [1, 2] as const) {
      const len = Math.min(Atomics.load(header, fd - 1), region)
      const from = r.sent[fd - 1]
      if (len <= from) continue
      r.sent[fd - 1] = len
      const start = HEADER_BYTES + (fd - 1) * region
      try { r.onOutput(fd, new Uint8Array(slot.output).slice(start + from, start + len)) } catch (err) { log.warn({ err }, 'live output listener threw') }
    }
  }

  /** The job is over: hand the listener the rest, stop polling. */
  private endOutput (slot: Slot, r: Running): void {
    this.pumpOutput(slot, r)
    clearInterval(r.poll)
  }

  private detach (p: Pending): void {
    if (p.signal != null && p.onAbort != null) p.signal.removeEventListener('abort', p.onAbort)
  }

  private abort (p: Pending): void {
    const qi = this.queue.indexOf(p)
    if (qi >= 0) {
      this.queue.splice(qi, 1)
      p.reject(new AbortedError())
      return
    }
    const slot = this.slots.find(s => s.running?.job === p.job && s.running?.resolve === p.resolve)
    if (slot?.running == null) return
    clearTimeout(slot.running.timer)
    clearInterval(slot.running.poll)
    slot.running.guard.exited = exitOf(slot)
    slot.running = undefined
    this.failed++
    p.reject(new AbortedError('job aborted while running'))
    this.replace(slot)
  }

  private result (r: Running, io: { stdout: Uint8Array, stderr: Uint8Array }, d: Finished, outputs?: OutputFile[], endedAt = performance.now()): ExecResult {
    const { stdout, stderr } = io
    const output = d.output !== undefined ? JSON.parse(d.output) as unknown : undefined
    const result: ExecResult = {
      exitCode: d.exitCode,
      stdout,
      stderr,
      output,
      ...(outputs != null && outputs.length > 0 ? { outputs } : {}),
      truncated: d.truncated,
      resultHash: computeResultHash(r.job.id, { exitCode: d.exitCode, stdout, stderr, output, outputs }),
      usage: {
        wallMs: Math.round((endedAt - r.startedAt) * 1000) / 1000,
        memoryBytes: d.memoryBytes,
        outputBytes: stdout.length + stderr.length + (d.output !== undefined ? Buffer.byteLength(d.output) : 0),
        fuel: d.fuel
      }
    }
    if (d.error != null) result.error = d.error
    if (result.error != null) this.failed++; else this.completed++
    return result
  }

  /**
   * Settle a job the worker finished: its output files are named by their UnixFS CIDs, computed
   * here from the files on disk (streamed: the main thread never holds a whole file), then the
   * result hash covers them. A host that could not write them throws OutputStorageError.
   */
  private async complete (r: Running, io: { stdout: Uint8Array, stderr: Uint8Array }, d: Finished): Promise<ExecResult> {
    // the job's wall time ends here, not after its files are hashed
    const endedAt = performance.now()
    if (d.hostError != null) { this.failed++; throw new OutputStorageError(d.hostError) }
    let outputs: OutputFile[] | undefined
    if (d.error == null && d.files != null && d.files.length > 0) {
      outputs = []
      try {
        for (const f of d.files) outputs.push({ path: f.path, cid: r.job.nameOutput != null ? await r.job.nameOutput(f.file, f.size) : await unixfsCidOfFile(f.file), size: f.size, file: f.file })
      } catch (err: any) {
        this.failed++
        throw new OutputStorageError(`cannot read back an output file: ${String(err?.code ?? err?.message ?? err)}`, err)
      }
    }
    return this.result(r, io, d, outputs, endedAt)
  }

  private finish (slot: Slot, done: DoneMessage): void {
    const r = slot.running
    if (r == null || slot.state !== 'busy') return // killed already
    clearTimeout(r.timer)
    this.endOutput(slot, r)
    slot.running = undefined
    this.detach(r)
    // the worker's output buffer is read now: the worker may take the next job at once
    const io = readOutput(slot.output, this.init.maxOutputBytes)
    this.complete(r, io, done).then(r.resolve, r.reject)
    if (done.recycle) {
      this.replace(slot)
    } else {
      this.idle(slot)
    }
  }

  /** Resolve the running job of a slot that is about to be killed, keeping the output it wrote so far. */
  private settleKilled (slot: Slot, name: FailureName, message: string): void {
    const r = slot.running
    if (r == null) return
    clearTimeout(r.timer)
    this.endOutput(slot, r)
    slot.running = undefined
    this.detach(r)
    r.guard.exited = exitOf(slot)
    const { stdout, stderr } = readOutput(slot.output, this.init.maxOutputBytes)
    const truncated = stdout.length + stderr.length >= r.limits.outputBytes && r.limits.outputBytes > 0
    r.resolve(this.result(r, { stdout, stderr }, {
      exitCode: -1,
      truncated,
      wallMs: performance.now() - r.startedAt,
      memoryBytes: 0,
      fuel: r.limits.fuel,
      error: { name, message }
    }))
  }
}

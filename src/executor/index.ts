/**
 * The sandboxed executor: runs strangers' code for a provider.
 *
 * Two engines:
 * - `wasm`: a WASI preview1 command module (`_start`), with the job's args,
 *   env and stdin; stdout and stderr are captured.
 * - `js`: JavaScript source run in QuickJS (quickjs-emscripten). The job
 *   defines `main(input)`; it receives the job's JSON `input` and its return
 *   value (or the value its promise settles to) is the JSON `output`.
 *   `console.*` writes to stdout (log/info/debug) or stderr (warn/error).
 *
 * Jobs run in a pool of worker_threads, one job per worker at a time. Jobs
 * beyond the pool wait in a bounded queue; a full queue throws
 * QueueFullError (a provider's decline reason). A worker that had to be
 * killed (timeout, abort) or that faulted is terminated and replaced.
 *
 * Guarantees (each enforced and tested, see docs/EXECUTOR.md):
 * - Wall clock: a guest is stopped within 250 ms after its deadline, even
 *   one in an endless loop or trying to sleep (WASI never blocks: sleeping
 *   advances a virtual clock; a looping wasm guest's worker is terminated;
 *   QuickJS is interrupted by its interrupt handler).
 * - Memory: the module's memory and table maxima are rewritten so that
 *   linear memory + tables stay within the job's cap before compilation
 *   (modules that cannot be capped, or that exceed the module budget, are
 *   refused); QuickJS gets a memory limit and a stack cap.
 * - Output: stdout + stderr (+ JS output JSON) are counted in bytes at write
 *   time and cut at the job's cap (`truncated`, error `output-limit`, and the
 *   guest is stopped).
 * - Output files: a wasm guest writes files under its preopened `/outputs`, a
 *   JS guest calls `writeFile(path, data)` / `appendFile(path, data)`; both go
 *   to the job's folder on disk as they are written (`job.outputDir`), with
 *   caps on the count, each file and the total (checked before writing; past
 *   one, `output-limit`), and come back sorted by path with their UnixFS CIDs
 *   and host files (files.ts). The result hash covers path, CID and size.
 * - Fuel (optional): a deterministic instruction budget for wasm (the module
 *   is instrumented); a coarse one for JS (QuickJS interrupt ticks).
 * - No host access: no host directories or files, no network, no host env.
 * - Determinism: clocks start at a fixed virtual epoch and advance per read;
 *   randomness (WASI random_get, Math.random) is seeded from `seed` (default:
 *   job id). The same job gives byte-identical results on any provider, and
 *   `resultHash` = sha256(canonicalEncode({ jobId, exitCode, stdout, stderr,
 *   output })) lets anyone re-check a result ({@link computeResultHash}).
 *
 * Job-caused failures (timeout, memory-limit, output-limit, trap,
 * fuel-exhausted; with outer isolation sandbox-crash) RESOLVE with
 * `result.error` set. Refusals THROW named
 * errors (errors.ts): invalid-module, unsupported-engine, queue-full, aborted.
 *
 * @example
 * ```ts
 * const executor = createExecutor({ poolSize: 2 })
 * await executor.start()
 * const r = await executor.run({ id: 'job-1', engine: 'js', source: 'function main (x) { return x * 2 }', input: 21,
 *   limits: { timeoutMs: 1000, memoryMb: 32, outputBytes: 65536 } })
 * r.output // 42
 * await executor.stop()
 * ```
 */
import { ExecutorPool } from './pool.js'
import { IsolatedExecutor } from './isolation.js'
import * as C from './constants.js'

export * from './errors.js'
export { computeResultHash, outputsField, type OutputRef } from './hash.js'
export { DEFAULT_OUTPUT_CAPS, normaliseOutputPath, isCanonicalOutputPath, outputListProblem, inputListProblem, outputTarget, type OutputCaps } from './files.js'
import { DEFAULT_OUTPUT_CAPS, type OutputCaps } from './files.js'
import type { OutputRef } from './hash.js'
export * from './backend.js'
import type { FailureName } from './protocol.js'
export type { FailureName }

export { ENGINES, type Engine } from '../engines.js'
import { ENGINES, type Engine } from '../engines.js'

export interface JobLimits {
  timeoutMs: number
  memoryMb: number
  outputBytes: number
  /** Instruction budget: exact for wasm (metered module), coarse (10 000-tick steps) for js. */
  fuel?: number
}

export interface ExecJob {
  /** Job id, part of the result hash and the default seed. */
  id: string
  engine: Engine
  /** WASI module bytes (engine wasm). */
  module?: Uint8Array
  /** If given, the module bytes are verified against it (sha2-256 CID). */
  moduleCid?: string
  /** JS source (engine js); defines main(input). */
  source?: string
  /** Arguments after argv[0] (which is always "job"). */
  args?: string[]
  env?: Record<string, string>
  stdin?: Uint8Array
  /** JSON-serialisable input handed to main() (engine js). */
  input?: unknown
  limits: JobLimits
  /** Determinism seed (defaults to the job id). */
  seed?: string
  /**
   * Input files: `path` as the guest sees it (under /inputs for wasm, readFile(path) for js), `file`
   * the host file holding its bytes (read as the guest reads, never loaded whole). Paths follow the
   * output path rules (relative, no `..`, no duplicates, no file/directory clash: inputListProblem).
   */
  inputs?: ExecInput[]
  /**
   * Where the job's output files go on disk as the guest writes them: an empty folder of the job's
   * own (created when missing; a folder that holds anything is refused, `output-storage`; the
   * caller removes it when done with the files). Without it, the executor makes a folder of its own
   * under the OS temp dir (or ExecutorInit.outputsRoot); either way the result names each file's
   * host path (`outputs[].file`). A job that fails leaves no file in it.
   */
  outputDir?: string
  /**
   * Names a finished job's output file by its UnixFS CID (`outputs[].cid`), and may keep its bytes
   * on the way: a provider imports the file into its blob store here, so the file is read once,
   * not once to name it and again to store it. It must give the CID `ipfs add --cid-version 1`
   * gives the file. Default: the CID is computed and nothing is kept. An isolated executor does
   * not carry it to its pool process (that names the files itself).
   */
  nameOutput?: (file: string, size: number) => Promise<string>
}

/** One input file of a job: its path inside the job, and the host file with its bytes. */
/**
 * An input file of a job: a file on disk, or ranges of files read in order as one (`extents`: a
 * blob read where the provider's block store keeps it, not copied; an executor that says
 * `readsInPlace`). Either way the guest sees one read-only file of the ranges' total size.
 */
export type ExecInput = { path: string, file: string } | { path: string, extents: InputExtent[] }
/** `length` bytes at `offset` of `file`. */
export interface InputExtent { file: string, offset: number, length: number }

export interface ExecUsage {
  wallMs: number
  /** wasm: linear memory size at the end (= peak; memory never shrinks). js: QuickJS heap in use at the end (the cap on memory-limit). */
  memoryBytes: number
  /** stdout + stderr + output JSON bytes. */
  outputBytes: number
  fuel?: number
}

/** The job-caused failures a result can carry (the worker protocol's names). */
export type ExecErrorName = FailureName

export interface ExecResult {
  /** The guest's exit code; -1 when the guest did not exit (stopped by the sandbox or trapped). */
  exitCode: number
  stdout: Uint8Array
  stderr: Uint8Array
  /** JS jobs: main()'s return value (JSON). */
  output?: unknown
  /**
   * The files the job wrote (wasm: under /outputs; js: writeFile), sorted by path; absent when it
   * wrote none or failed. Each with its CID (UnixFS, as `ipfs add --cid-version 1` names the same
   * bytes) and size, which the result hash covers, and the host file holding its bytes.
   */
  outputs?: OutputFile[]
  truncated: boolean
  /** hex sha256 of canonicalEncode({ jobId, exitCode, stdout, stderr, output, outputs? }). */
  resultHash: string
  usage: ExecUsage
  error?: { name: ExecErrorName, message: string }
}

/** An output file and the host file holding its bytes (the result hash covers its path, CID and size). */
export interface OutputFile extends OutputRef { file: string }

export interface ExecutorStats {
  poolSize: number
  busy: number
  queued: number
  /** Jobs that resolved without error. */
  completed: number
  /** Jobs that resolved with an error or were aborted while running. */
  failed: number
  /** Workers with QuickJS loaded and warmed up (the in-process pool only). */
  jsWarm?: number
}

/**
 * Live output: called with what the guest wrote to stdout (1) or stderr (2)
 * since the last call, while it runs (every LIVE_OUTPUT_POLL_MS) and once more
 * before the job resolves. The bytes are the same ones the result carries (so
 * capped like it); a listener must not throw and must not keep them long.
 */
export type OutputListener = (fd: 1 | 2, data: Uint8Array) => void

export interface RunOptions {
  signal?: AbortSignal
  onOutput?: OutputListener
}

export interface Executor {
  run (job: ExecJob, opts?: RunOptions): Promise<ExecResult>
  stats (): ExecutorStats
  engines (): Engine[]
  start (): Promise<void>
  stop (): Promise<void>
  /** Start the warm workers and load what the first job of each engine needs, now (a pool made with `deferWarmUp`); a no-op elsewhere. */
  warmUp?: () => void
  /** It takes inputs as `extents` of files it can open (the in-process pool; not an isolated one, which sees other files). */
  readonly readsInPlace?: boolean
}

export type Isolation = 'none' | 'unshare' | 'bwrap'

export interface ExecutorInit {
  /** Workers; 0 = number of cores. */
  poolSize: number
  /** Workers started with the pool and kept while idle (≤ poolSize); the others start when jobs wait and stop when idle. */
  warmWorkers: number
  /**
   * The warm workers start at `warmUp()`, not with the pool, and load QuickJS (≈ 45 ms of CPU and
   * 20 MiB) then, or a worker for its first JS job: a node calls `warmUp()` once it is ready and
   * the machine's CPUs are free (cpu-idle.ts), so neither its start nor others' share the cores
   * with them (a worker's start is ≈ 0.1 s of CPU). A job before it starts a worker of its own.
   * `start()` still fails when the worker file is missing. In-process pools only (an isolated pool
   * warms at start).
   */
  deferWarmUp?: boolean
  /** How long a worker beyond the warm ones may sit idle before it stops (default WORKER_IDLE_MS). */
  workerIdleMs?: number
  queueSize: number
  maxTimeoutMs: number
  maxMemoryMb: number
  maxOutputBytes: number
  moduleCacheSize: number
  /** Caps on a job's output files (count, per file, total); default DEFAULT_OUTPUT_CAPS. */
  outputFiles?: OutputCaps
  /**
   * Where jobs that name no `outputDir` get one (default: the OS temp dir). With bwrap isolation
   * this folder is the one place the sandbox process may write (bound read-write), so a job's
   * `outputDir` must lie inside it.
   */
  outputsRoot?: string
  /** Outer isolation: run the pool in a child process without network (see docs/EXECUTOR.md). */
  isolation: Isolation
  engines: Engine[]
}

export const DEFAULT_INIT: ExecutorInit = {
  poolSize: C.POOL_SIZE,
  warmWorkers: C.WARM_WORKERS,
  queueSize: C.QUEUE_SIZE,
  maxTimeoutMs: C.MAX_TIMEOUT_MS,
  maxMemoryMb: C.MAX_MEMORY_MB,
  maxOutputBytes: C.MAX_OUTPUT_BYTES,
  outputFiles: DEFAULT_OUTPUT_CAPS,
  moduleCacheSize: C.MODULE_CACHE_SIZE,
  isolation: 'none',
  engines: [...ENGINES]
}

export function createExecutor (init: Partial<ExecutorInit> = {}): Executor {
  const full: ExecutorInit = { ...DEFAULT_INIT }
  for (const [k, v] of Object.entries(init)) if (v !== undefined) (full as unknown as Record<string, unknown>)[k] = v
  if (full.isolation !== 'none') return new IsolatedExecutor(full)
  return new ExecutorPool(full)
}

export { createSlurmBackend, SlurmBackend, SlurmJobFailedError, SlurmUnavailableError, DEFAULT_SLURM_INIT, type SlurmInit } from './slurm/index.js'
export { mercatoCommand } from './command.js'

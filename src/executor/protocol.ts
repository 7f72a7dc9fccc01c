/**
 * Messages between the pool (main thread) and its workers. Guest output does
 * not travel in these: it is in the worker's shared output buffer.
 */
import type { MemoryInfo } from './wasm-module.js'
import type { OutputCaps, StagedOutput } from './files.js'
import type { InputEntry } from './inputs.js'

/** `sandbox-crash`: the job brought the (isolated) pool process down while it ran alone. */
export type FailureName = 'timeout' | 'memory-limit' | 'output-limit' | 'trap' | 'fuel-exhausted' | 'sandbox-crash'

export interface WorkerInit {
  output: SharedArrayBuffer
  maxOutputBytes: number
  /** Load QuickJS (sized for this cap) and warm it up once ready; false: on a WarmMessage or the first JS job. */
  js: boolean
  jsMemoryBytes: number
  /** QuickJS's wasm compiled by the pool, shared by its workers; absent: the worker compiles its own */
  quickjs?: WebAssembly.Module
}

export interface RunWasm {
  type: 'run'
  engine: 'wasm'
  module: WebAssembly.Module
  memory?: MemoryInfo
  growHook: boolean
  fuelMetered: boolean
  args: string[]
  env: Record<string, string>
  stdin: Uint8Array
  timeoutMs: number
  memoryBytes: number
  outputBytes: number
  fuel?: number
  seed: string
  /** caps on the files the guest writes under /outputs */
  files: OutputCaps
  /** the job's staging folder: where its output files go on disk, as the guest writes them */
  outputDir?: string
  /** one slot per output file (Int32, -1 when free): the descriptors the worker holds open, for the pool to close after a kill */
  fdTable?: SharedArrayBuffer
  /** the job's input files (open descriptors, owned by the pool), mounted read-only at /inputs; absent: no /inputs */
  inputs?: InputEntry[]
}

export interface RunJs {
  type: 'run'
  engine: 'js'
  source: string
  /** JSON text of the job's input ("null" when none). */
  input: string
  timeoutMs: number
  memoryBytes: number
  outputBytes: number
  fuel?: number
  seed: string
  /** caps on the files the guest writes with writeFile() */
  files: OutputCaps
  /** the job's staging folder (see RunWasm) */
  outputDir?: string
  fdTable?: SharedArrayBuffer
  /** the job's input files (open descriptors, owned by the pool), read with readFile() */
  inputs?: InputEntry[]
}

export type RunMessage = RunWasm | RunJs

/** Load and warm up QuickJS now (a worker started with `js: false`; ignored once done), with the pool's compiled QuickJS when the worker started without it. */
export interface WarmMessage { type: 'warm', quickjs?: WebAssembly.Module }

export interface DoneMessage {
  type: 'done'
  exitCode: number
  /** JSON text of the JS job's output (undefined when main returned undefined). */
  output?: string
  truncated: boolean
  wallMs: number
  memoryBytes: number
  fuel?: number
  error?: { name: FailureName, message: string }
  /** The files the guest wrote, sorted by path, as host files in the staging folder (only when it ended without error). */
  files?: StagedOutput[]
  /** The host failed to write an output file (disk full, folder gone): no result, the pool throws OutputStorageError. */
  hostError?: string
  /** The worker asks to be replaced (guest memory to give back, a faulted engine). */
  recycle: boolean
}

export type WorkerMessage = { type: 'ready' } | { type: 'warmed' } | DoneMessage
